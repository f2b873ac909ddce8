"""``flash-vstream``: offline replay and questions on the same engine the ROS node runs.

    flash-vstream replay SOURCE [--ask Q ...] [--interactive] [--speed recorded|max] ...
    flash-vstream ask --load FILE "question" ...
    flash-vstream info FILE

SOURCE is a video file, an image folder or a rosbag2 bag (MCAP or sqlite3). Answers go to
stdout with their evidence stamps and latency; progress and errors go to stderr. Any error is
one line and exit status 2. Heavy modules (torch, the engine) load only when a command runs,
so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from flash_vstream_ros.errors import ConfigError, FlashVStreamError
from flash_vstream_ros.stamps import fmt_s, to_ns, to_s

if TYPE_CHECKING:
    from flash_vstream_ros.config import AppConfig
    from flash_vstream_ros.engine import Answer, Engine, Question
    from flash_vstream_ros.io.sources import Source

PROG = 'flash-vstream'
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('-v', '--verbose', action='store_true', help='log engine messages')
    sub = parser.add_subparsers(dest='command', required=True)
    replay = sub.add_parser('replay', help='feed a video, image folder or bag, then ask')
    replay.add_argument('source', help='video file, image folder or rosbag2 bag')
    replay.add_argument(
        '--speed',
        choices=('recorded', 'max'),
        default='max',
        help='recorded: real time by the stamps; max: as fast as the engine '
        'ingests (no frame dropped) (default: max)',
    )
    replay.add_argument(
        '--topic',
        action='append',
        default=[],
        metavar='T',
        help='bag image topic to replay (repeatable; default: all)',
    )
    replay.add_argument(
        '--fps',
        type=float,
        default=1.0,
        help='stamps of an image folder: frames per second (default: 1)',
    )
    replay.add_argument('--limit', type=int, default=0, help='stop after N source frames')
    replay.add_argument('--save', metavar='FILE', help='save the memory after the replay')
    replay.add_argument('--load', metavar='FILE', help='load a memory before the replay')
    _add_engine_args(replay)
    _add_question_args(replay)
    ask = sub.add_parser('ask', help='answer questions from a saved memory')
    ask.add_argument('--load', metavar='FILE', required=True, help='memory file')
    _add_engine_args(ask)
    _add_question_args(ask, positional=True)
    info = sub.add_parser('info', help='describe a memory file')
    info.add_argument('file')
    return parser


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--config', metavar='YAML', help='config file (plain or ROS params YAML)')
    p.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='override a config value, e.g. memory.kind=synopsis (repeatable)',
    )
    p.add_argument('--model-family', help='model.family (tiny, flash_vstream, llava)')
    p.add_argument('--model-path', help='model.path (checkpoint folder or hub id)')
    p.add_argument('--device', help='model.device (auto, cpu, cuda, cuda:N)')


def _add_question_args(p: argparse.ArgumentParser, positional: bool = False) -> None:
    if positional:
        p.add_argument('questions', nargs='*', metavar='QUESTION')
    p.add_argument('--ask', action='append', default=[], metavar='Q', help='question (repeatable)')
    p.add_argument('--interactive', action='store_true', help='read questions from stdin')
    p.add_argument(
        '--window-last',
        type=float,
        default=0.0,
        metavar='S',
        help='use only the last S seconds before the newest memory',
    )
    p.add_argument(
        '--window',
        nargs=2,
        type=float,
        metavar=('START', 'END'),
        help='use only memory between these stamps (seconds)',
    )
    p.add_argument('--camera', action='append', default=[], help='camera to ask about')
    p.add_argument('--max-new-tokens', type=int, default=0, help='answer length limit')


# ----------------------------------------------------------------- config


def load_config(args: argparse.Namespace) -> AppConfig:
    """The config tree from --config, --set and the model shortcuts (validated)."""
    import yaml

    from flash_vstream_ros.config import AppConfig, load_yaml, with_overrides

    cfg = load_yaml(args.config) if args.config else AppConfig()
    flat: dict[str, Any] = {}
    for item in args.set:
        key, sep, raw = item.partition('=')
        if not sep or not key:
            raise ConfigError(f'--set expects KEY=VALUE, got {item!r}')
        flat[key.strip()] = yaml.safe_load(raw) if raw.strip() else ''
    for key, value in (
        ('model.family', args.model_family),
        ('model.path', args.model_path),
        ('model.device', args.device),
    ):
        if value is not None:
            flat[key] = value
    return with_overrides(cfg, flat) if flat else cfg


# ----------------------------------------------------------------- commands


def cmd_replay(args: argparse.Namespace) -> int:
    from flash_vstream_ros.engine import Engine
    from flash_vstream_ros.io.sources import open_source

    cfg = load_config(args)
    engine = Engine(cfg)
    source = open_source(
        args.source,
        fps=args.fps,
        topics=args.topic,
        on_bad=lambda reason: engine.reject_frame(reason),
    )
    engine.start()
    try:
        if args.load:
            info = engine.load_memory(args.load)
            print(f'loaded {info.frames} frames from {info.path}', file=sys.stderr)
        feed(engine, source, args.speed, args.limit, sys.stderr)
        if args.save:
            info = engine.save_memory(args.save)
            print(
                f'saved {info.frames} frames to {info.path} ({info.bytes} bytes)', file=sys.stderr
            )
        return ask_all(engine, args, list(args.ask))
    finally:
        engine.stop()


def cmd_ask(args: argparse.Namespace) -> int:
    from flash_vstream_ros.engine import Engine

    engine = Engine(load_config(args))
    engine.start()
    try:
        engine.load_memory(args.load)
        return ask_all(engine, args, list(args.questions) + list(args.ask))
    finally:
        engine.stop()


def cmd_info(args: argparse.Namespace) -> int:
    import datetime

    from flash_vstream_ros.io.persistence import read_info

    info = read_info(args.file)
    created = info.get('created')
    when = datetime.datetime.fromtimestamp(created).isoformat() if created else '?'
    print(f'file:           {args.file}')
    print(f'format version: {info.get("format_version")}')
    print(
        f'memory kind:    {info.get("kind")}  per_camera={info.get("per_camera")}  '
        f'feature_dim={info.get("feature_dim")}'
    )
    print(f'frames:         {info.get("frames")}')
    print(f'created:        {when}')
    keys = [m.get('key') for m in info.get('memories', [])]
    print(f'memories:       {", ".join(map(str, keys)) or "none"}')
    return 0


# ----------------------------------------------------------------- feeding


def feed(engine: Engine, source: Source, speed: str, limit: int, out: TextIO) -> None:
    """Submit every source frame; paced by stamps (recorded) or by the engine (max)."""
    from flash_vstream_ros.errors import BadFrameError

    progress = Progress(out, limit or source.frames)
    queue_size = engine.config.engine.frame_queue_size
    t_wall = time.monotonic()
    first: int | None = None
    for n, (image, stamp, camera) in enumerate(source, start=1):
        first = stamp if first is None else first
        if speed == 'recorded':
            delay = to_s(stamp - first) - (time.monotonic() - t_wall)
            if delay > 0:
                time.sleep(delay)
        else:
            while engine.pending() >= queue_size:
                time.sleep(0.002)
        try:
            engine.submit_frame(image, stamp, camera)
        except BadFrameError as exc:
            progress.note(f'frame {n} of {camera} rejected: {exc}')
        progress.update(n, engine)
        if limit and n >= limit:
            break
    engine.wait_idle(3600.0)
    progress.finish(engine)


class Progress:
    """A one-line progress display on stderr (rewritten in place on a terminal)."""

    def __init__(self, out: TextIO, total: int | None) -> None:
        self._out = out
        self._total = total
        self._tty = out.isatty()
        self._period = 0.2 if self._tty else 2.0
        self._last = 0.0
        self._t0 = time.monotonic()
        self._n = 0

    def update(self, n: int, engine: Engine, force: bool = False) -> None:
        self._n = n
        now = time.monotonic()
        if not force and now - self._last < self._period:
            return
        self._last = now
        st = engine.status()
        of = f'/{self._total}' if self._total else ''
        line = (
            f'replay {n}{of} frames | ingested {st.frames_ingested} skipped '
            f'{st.frames_skipped_rate} dropped {st.frames_dropped_queue} rejected '
            f'{st.frames_rejected} | {now - self._t0:.1f} s'
        )
        self._out.write(f'\r{line}\x1b[K' if self._tty else f'{line}\n')
        self._out.flush()

    def note(self, text: str) -> None:
        self._out.write(('\n' if self._tty else '') + text + '\n')

    def finish(self, engine: Engine) -> None:
        self.update(self._n, engine, force=True)
        if self._tty:
            self._out.write('\n')
        self._out.flush()


# ----------------------------------------------------------------- questions


def make_question(args: argparse.Namespace, text: str) -> Question:
    from flash_vstream_ros.engine import Question
    from flash_vstream_ros.memory.base import TimeWindow

    window = TimeWindow(to_ns(args.window[0]), to_ns(args.window[1])) if args.window else None
    return Question(
        text=text,
        window=window,
        last_s=args.window_last,
        cameras=tuple(args.camera),
        max_new_tokens=args.max_new_tokens,
    )


def ask_all(engine: Engine, args: argparse.Namespace, questions: list[str]) -> int:
    """Answer the given questions, then stdin's when --interactive; 2 if any failed."""
    if not questions and not args.interactive:
        print(_status_line(engine), file=sys.stderr)
        return 0
    status = 0
    for text in questions:
        status = max(status, ask_one(engine, make_question(args, text), stream=False))
    if args.interactive:
        status = max(status, interactive(engine, args))
    return status


def ask_one(engine: Engine, question: Question, stream: bool) -> int:
    from flash_vstream_ros.errors import BadQuestionError, BusyError, ModelError

    print(f'Q: {question.text}')
    if stream:
        print('A: ', end='', flush=True)
    try:
        answer = engine.ask(question, on_token=_printer() if stream else None)
    except (BadQuestionError, BusyError, ModelError) as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return EXIT_ERROR
    print('' if stream else f'A: {answer.text}')
    print(format_answer(answer))
    return 0


def _printer() -> Any:
    def on_token(piece: str, tokens: int) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    return on_token


def interactive(engine: Engine, args: argparse.Namespace) -> int:
    status = 0
    while True:
        try:
            line = input('question> ' if sys.stdin.isatty() else '')
        except EOFError:
            return status
        text = line.strip()
        if text in ('quit', 'exit'):
            return status
        if text:
            status = max(status, ask_one(engine, make_question(args, text), stream=True))


def format_answer(answer: Answer) -> str:
    """Evidence stamps grouped by part and camera, then latency and token counts."""
    groups: dict[tuple[str, str], list[int]] = {}
    for e in answer.evidence:
        groups.setdefault((e.part, e.camera), []).append(e.stamp)
    lines = []
    for (part, camera), stamps in groups.items():
        shown = ', '.join(fmt_s(s) for s in sorted(stamps)[:12])
        more = f' (+{len(stamps) - 12} more)' if len(stamps) > 12 else ''
        lines.append(f'   {part:<9} {camera}: {shown}{more}')
    lines.append(
        f'   latency {answer.latency_s:.3f} s | {answer.answer_tokens} tokens | '
        f'{answer.visual_tokens} visual tokens | stop: {answer.stop_reason}'
    )
    return '\n'.join(lines)


def _status_line(engine: Engine) -> str:
    st = engine.status()
    return (
        f'memory: {st.frames_ingested} frames ingested from {list(st.cameras)}, '
        f'{st.visual_tokens} visual tokens, {st.memory_bytes} bytes, '
        f'stamps {fmt_s(st.oldest_stamp)}..{fmt_s(st.newest_stamp)} s'
    )


# ----------------------------------------------------------------- entry point


COMMANDS = {'replay': cmd_replay, 'ask': cmd_ask, 'info': cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns the exit status (0 ok, 2 error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format='%(levelname)s %(name)s: %(message)s',
    )
    try:
        return COMMANDS[args.command](args)
    except FlashVStreamError as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f'{PROG}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
