"""Test-only client: calls every service and the action of interfaces_server.py, prints JSON.

    python interfaces_client.py --ros-args -p server:=/fvs_rt/server
Prints one JSON object (the fields the test checks) on the last line of stdout.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from builtin_interfaces.msg import Time
import rclpy
from rclpy.action import ActionClient
from rclpy.node import Node
from std_srvs.srv import Trigger

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.srv import Ask, MemoryFile

WAIT_S = 30.0


def call(node: Node, srv_type: Any, name: str, request: Any) -> Any:
    client: Any = node.create_client(srv_type, name)
    if not client.wait_for_service(timeout_sec=WAIT_S):
        raise TimeoutError(f'service {name} not available after {WAIT_S} s')
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=WAIT_S)
    if not future.done():
        raise TimeoutError(f'service {name} did not answer in {WAIT_S} s')
    return future.result()


def ask(node: Node, server: str) -> dict[str, Any]:
    request = Ask.Request(
        question='where is the red toolbox',
        window_last_s=12.5,
        cameras=['front', 'rear'],
        max_new_tokens=32,
        temperature=-1.0,
    )
    request.window_start = Time(sec=100, nanosec=5)
    request.window_end = Time(sec=200, nanosec=0)
    response = call(node, Ask, f'{server}/ask', request)
    bad = call(node, Ask, f'{server}/ask', Ask.Request(question=''))
    return {
        'success': response.success,
        'answer': response.answer,
        'evidence': [
            (e.camera, e.stamp.sec, e.stamp.nanosec, e.end.sec, e.weight)
            for e in response.evidence
        ],
        'answer_tokens': response.answer_tokens,
        'visual_tokens': response.visual_tokens,
        'latency_s': response.latency_s,
        'stop_reason': response.stop_reason,
        'memory_cameras': list(response.memory.cameras),
        'memory_part_used': list(response.memory.part_used),
        'bad_success': bad.success,
        'bad_error': bad.error_message,
    }


def memory_files(node: Node, server: str) -> dict[str, Any]:
    saved = call(node, MemoryFile, f'{server}/save_memory', MemoryFile.Request(path='/tmp/m.fvs'))
    loaded = call(node, MemoryFile, f'{server}/load_memory', MemoryFile.Request(path='/tmp/m.fvs'))
    reset = call(node, Trigger, f'{server}/reset_memory', Trigger.Request())
    return {
        'save': [saved.success, saved.message, saved.path, saved.frames, saved.bytes],
        'load': [loaded.success, loaded.message],
        'reset': [reset.success, reset.message],
    }


def ask_stream(node: Node, server: str, question: str, cancel_after: int = 0) -> dict[str, Any]:
    client: Any = ActionClient(node, AskStream, f'{server}/ask_stream')
    if not client.wait_for_server(timeout_sec=WAIT_S):
        raise TimeoutError(f'action {server}/ask_stream not available after {WAIT_S} s')
    feedback: list[tuple[str, str, int]] = []
    goal = AskStream.Goal(question=question, max_new_tokens=0, temperature=-1.0)
    sent = client.send_goal_async(
        goal,
        feedback_callback=lambda msg: feedback.append(
            (msg.feedback.text, msg.feedback.partial_answer, msg.feedback.answer_tokens)
        ),
    )
    rclpy.spin_until_future_complete(node, sent, timeout_sec=WAIT_S)
    handle = sent.result()
    if handle is None:
        raise TimeoutError(f'goal to {server}/ask_stream not answered in {WAIT_S} s')
    if not handle.accepted:
        return {'accepted': False}
    if cancel_after:
        deadline = time.monotonic() + WAIT_S
        while len(feedback) < cancel_after and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        cancelled = handle.cancel_goal_async()
        rclpy.spin_until_future_complete(node, cancelled, timeout_sec=WAIT_S)
    result_future = handle.get_result_async()
    rclpy.spin_until_future_complete(node, result_future, timeout_sec=WAIT_S)
    outcome = result_future.result()
    if outcome is None:
        raise TimeoutError(f'no result from {server}/ask_stream in {WAIT_S} s')
    return {
        'accepted': True,
        'status': outcome.status,
        'answer': outcome.result.answer,
        'stop_reason': outcome.result.stop_reason,
        'success': outcome.result.success,
        'answer_tokens': outcome.result.answer_tokens,
        'feedback': feedback,
    }


def main() -> int:
    rclpy.init()
    node = rclpy.create_node('interfaces_client')
    try:
        node.declare_parameter('server', '/server')
        server = node.get_parameter('server').value
        report = {
            'ask': ask(node, server),
            'files': memory_files(node, server),
            'stream': ask_stream(node, server, 'one two three four'),
            'rejected': ask_stream(node, server, ''),
            'cancelled': ask_stream(node, server, ' '.join(['word'] * 200), cancel_after=2),
        }
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
