"""``flash_vstream_ask``: ask the flash_vstream node a question from a terminal.

    flash_vstream_ask "what happened?" --window-last 300 --camera front_image_raw
    flash_vstream_ask --status [--wait-frames 10]

By default the question goes through the ``~/ask_stream`` action and the answer is printed as
it is generated; ``--service`` uses ``~/ask`` instead. Then the evidence stamps, the latency
and a memory summary follow. Ctrl-C while streaming cancels the goal and prints the partial
answer. Exit code 0 when an answer came back, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import time
from typing import Any, TextIO

from action_msgs.msg import GoalStatus
import rclpy
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.task import Future

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.ros.compat import init_without_signal_handlers
from flash_vstream_ros.ros.stamps import to_seconds, to_time
from flash_vstream_ros.srv import Ask

MAX_STAMPS = 6  # frame stamps listed per memory part
GOAL_ENDED = (
    GoalStatus.STATUS_SUCCEEDED,
    GoalStatus.STATUS_ABORTED,
    GoalStatus.STATUS_CANCELED,
)
WALL_CLOCK_AFTER = 1e9  # stamps past 2001-09-09 are wall-clock time; smaller ones sim time


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='flash_vstream_ask', description='Ask the flash_vstream node a question.'
    )
    parser.add_argument('question', nargs='?', default='', help='the question, in plain text')
    parser.add_argument(
        '--status',
        action='store_true',
        help='print the memory status (~/memory_status) instead of asking',
    )
    parser.add_argument(
        '--wait-frames',
        type=int,
        default=-1,
        metavar='N',
        help='with --status: wait until the node is active and has ingested N frames (0: '
        'until active)',
    )
    parser.add_argument(
        '--window-last',
        type=float,
        default=0.0,
        metavar='S',
        help='only the last S seconds before the newest memory (0 = all)',
    )
    parser.add_argument(
        '--window-start',
        type=float,
        default=0.0,
        metavar='T',
        help='only memory from stamp T (seconds) on',
    )
    parser.add_argument(
        '--window-end',
        type=float,
        default=0.0,
        metavar='T',
        help='only memory up to stamp T (seconds)',
    )
    parser.add_argument(
        '--camera',
        action='append',
        default=[],
        metavar='C',
        help='only this camera (repeat for several; default: all)',
    )
    parser.add_argument(
        '--max-tokens',
        type=int,
        default=0,
        metavar='N',
        help='answer length limit (0 = the node default)',
    )
    parser.add_argument(
        '--temperature',
        type=float,
        default=-1.0,
        help='sampling temperature (negative = the node default)',
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        '--action',
        dest='use_service',
        action='store_false',
        help='stream the answer through ~/ask_stream (default)',
    )
    mode.add_argument(
        '--service',
        dest='use_service',
        action='store_true',
        help='ask through the ~/ask service (answer printed at the end)',
    )
    parser.add_argument(
        '--node', default='/flash_vstream', help="the node's full name (default: /flash_vstream)"
    )
    parser.add_argument(
        '--timeout',
        type=float,
        default=120.0,
        metavar='S',
        help='give up after S seconds (default: 120)',
    )
    args, ros_args = parser.parse_known_args(argv)
    if not args.status and not args.question:
        parser.error('a question is needed (or --status)')
    args.ros_args = ros_args
    return args


def fill_request(out: Any, args: argparse.Namespace) -> Any:
    """Copy the command line into an Ask request or AskStream goal."""
    out.question = args.question
    out.window_last_s = float(args.window_last)
    out.window_start = to_time(args.window_start)
    out.window_end = to_time(args.window_end)
    out.cameras = list(args.camera)
    out.max_new_tokens = max(0, int(args.max_tokens))
    out.temperature = float(args.temperature)
    return out


def summary_lines(result: Any) -> list[str]:
    """What is printed after the answer: stop reason, latency, evidence, memory."""
    lines = [
        f'stop: {result.stop_reason} | answer tokens: {result.answer_tokens} | visual '
        f'tokens: {result.visual_tokens} | latency: {result.latency_s:.2f} s'
    ]
    return lines + evidence_lines(list(result.evidence)) + memory_lines(result.memory)


def evidence_lines(evidence: list[Any]) -> list[str]:
    """Evidence grouped by memory part: single frames by stamp, merged elements by span."""
    lines = [f'evidence: {len(evidence)} memory elements']
    parts: dict[str, list[Any]] = {}
    for ev in evidence:
        parts.setdefault(ev.part, []).append(ev)
    for part, items in parts.items():
        cameras = ','.join(sorted({ev.camera for ev in items}))
        if all(ev.weight <= 1.0 for ev in items):
            stamps = sorted(to_seconds(ev.stamp) for ev in items)
            shown = ', '.join(fmt_stamp(t) for t in stamps[:MAX_STAMPS])
            more = f' (+{len(stamps) - MAX_STAMPS})' if len(stamps) > MAX_STAMPS else ''
            lines.append(f'  {part:<9} {len(items):>3} frames at {shown}{more} [{cameras}]')
            continue
        start = min(to_seconds(ev.start) for ev in items)
        end = max(to_seconds(ev.end) for ev in items)
        frames = sum(ev.weight for ev in items)
        lines.append(
            f'  {part:<9} {len(items):>3} elements for {frames:g} frames, {fmt_stamp(start)} .. '
            f'{fmt_stamp(end)} [{cameras}]'
        )
    return lines


def fmt_stamp(t: float) -> str:
    """A stamp for people: UTC time of day for wall-clock stamps, seconds for sim time."""
    if t >= WALL_CLOCK_AFTER:
        clock = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
        return clock.strftime('%H:%M:%S.') + f'{clock.microsecond // 10_000:02d}'
    return f't={t:.2f} s'


def memory_lines(m: Any) -> list[str]:
    fill = ', '.join(
        f'{p} {u}/{c}' for p, u, c in zip(m.parts, m.part_used, m.part_capacity, strict=False)
    )
    return [
        f'memory: {m.memory_kind or "?"} ({m.state}), model {m.model or "?"}',
        f'  frames: {m.frames_received} received, {m.frames_ingested} ingested, '
        f'{m.frames_skipped_rate} skipped (rate), {m.frames_dropped_queue} dropped (queue), '
        f'{m.frames_rejected} rejected',
        f'  cameras: {", ".join(m.cameras) or "-"}; covers {fmt_stamp(to_seconds(m.oldest_stamp))}'
        f' .. {fmt_stamp(to_seconds(m.newest_stamp))}; {m.memory_bytes / 1e6:.2f} MB',
        f'  fill: {fill or "-"}',
    ]


class Asker:
    """One question through the action or the service, with a deadline."""

    def __init__(self, node: Node, args: argparse.Namespace, out: TextIO) -> None:
        self.node = node
        self.args = args
        self.out = out
        self.deadline = time.monotonic() + args.timeout
        self.printed = ''  # the answer so far, as streamed to out

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def wait(self, future: Future[Any]) -> bool:
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=self.remaining())
        return future.done()

    def wait_ended(self, handle: Any) -> bool:
        """Spin until the goal's status is terminal (succeeded, aborted, canceled)."""
        while handle.status not in GOAL_ENDED and self.remaining() > 0:
            rclpy.spin_once(self.node, timeout_sec=min(0.1, self.remaining()))
        return handle.status in GOAL_ENDED

    def by_service(self) -> Any | None:
        name = f'{self.args.node}/ask'
        client: Any = self.node.create_client(Ask, name)
        if not client.wait_for_service(timeout_sec=self.remaining()):
            raise TimeoutError(f'service {name} not available')
        future = client.call_async(fill_request(Ask.Request(), self.args))
        if not self.wait(future):
            raise TimeoutError(f'no answer from {name} within {self.args.timeout} s')
        return future.result()

    def by_action(self) -> Any | None:
        name = f'{self.args.node}/ask_stream'
        client: ActionClient[Any, Any, Any] = ActionClient(
            self.node, AskStream, name, feedback_sub_qos_profile=QoSProfile(depth=256)
        )
        if not client.wait_for_server(timeout_sec=self.remaining()):
            raise TimeoutError(f'action {name} not available')
        goal = fill_request(AskStream.Goal(), self.args)
        sent = client.send_goal_async(goal, feedback_callback=self.on_feedback)
        if not self.wait(sent):
            raise TimeoutError(f'goal not acknowledged by {name}')
        handle = sent.result()
        if handle is None or not handle.accepted:
            raise RuntimeError(f'goal rejected by {name} (busy or not active: see the node log)')
        # rclpy drops the feedback callback as soon as the result arrives, discarding feedback
        # still queued: ask for the result only once the goal's status says it has ended.
        try:
            if not self.wait_ended(handle):
                handle.cancel_goal_async()
                raise TimeoutError(f'no answer from {name} within {self.args.timeout} s')
        except KeyboardInterrupt:
            self.deadline = time.monotonic() + 5.0
            self.wait(handle.cancel_goal_async())
            if not self.wait_ended(handle):
                raise
        result_future = handle.get_result_async()
        if not self.wait(result_future):
            raise TimeoutError(f'no result from {name} within {self.args.timeout} s')
        response = result_future.result()
        return None if response is None else response.result

    def on_feedback(self, feedback: Any) -> None:
        # Print what the answer so far adds: a feedback message lost on the way (one sent
        # before the subscription matched) then costs nothing but a later, larger piece.
        partial = feedback.feedback.partial_answer
        self.out.write(partial[len(self.printed) :])
        self.out.flush()
        self.printed = partial


def show_status(node: Node, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the node's memory status once it is active with ``--wait-frames`` frames."""
    topic = f'{args.node}/memory_status'
    seen: list[Any] = []
    node.create_subscription(MemoryStatus, topic, seen.append, 10)
    deadline = time.monotonic() + args.timeout

    def ready() -> bool:
        last = seen[-1] if seen else None
        if last is None or args.wait_frames < 0:
            return last is not None
        return bool(last.state == 'active' and last.frames_ingested >= args.wait_frames)

    while not ready() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.2)
    if not seen:
        err.write(f'flash_vstream_ask: no status on {topic} within {args.timeout} s\n')
        return 1
    out.write('\n'.join(memory_lines(seen[-1])) + '\n')
    if not ready():
        err.write(
            f'flash_vstream_ask: {args.wait_frames} frames not ingested within '
            f'{args.timeout} s (state {seen[-1].state})\n'
        )
        return 1
    return 0


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    node = Node(f'flash_vstream_ask_{os.getpid()}')
    if args.status:
        try:
            return show_status(node, args, out, err)
        finally:
            node.destroy_node()
    asker = Asker(node, args, out)
    try:
        result = asker.by_service() if args.use_service else asker.by_action()
    except (TimeoutError, RuntimeError) as exc:
        err.write(f'flash_vstream_ask: {exc}\n')
        return 1
    finally:
        node.destroy_node()
    if result is None:
        err.write('flash_vstream_ask: no result\n')
        return 1
    if not result.success:
        err.write(f'flash_vstream_ask: {result.error_message}\n')
        return 1
    out.write(result.answer[len(asker.printed) :])  # what feedback did not bring
    out.write('\n---\n' + '\n'.join(summary_lines(result)) + '\n')
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # No rclpy signal handlers: Ctrl-C is a KeyboardInterrupt that cancels the goal while the
    # context is still up.
    init_without_signal_handlers(['flash_vstream_ask', *args.ros_args])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with `cmd &`
    try:
        return run(args)
    except KeyboardInterrupt:
        return 1
    finally:
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
