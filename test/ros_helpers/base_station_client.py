"""Test-only "base station": waits for the robot's node over DDS, asks it, prints JSON.

Started by test/test_ros_two_hosts.py inside its own network namespace (the base station),
while the node runs in another one (the robot):
    python base_station_client.py --ros-args -p node:=/flash_vstream -p wait_s:=240.0
Prints one JSON object on the last line of stdout: what it saw of the node's topics and
what the service and the action answered.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import rclpy
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import QoSProfile

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.srv import Ask


def spin_until(node: Node, done: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        rclpy.spin_once(node, timeout_sec=0.1)
    return True


def main() -> int:
    rclpy.init()
    node = rclpy.create_node('base_station')
    report: dict[str, Any] = {}
    try:
        node.declare_parameter('node', '/flash_vstream')
        node.declare_parameter('wait_s', 240.0)
        target = str(node.get_parameter('node').value)
        wait_s = float(node.get_parameter('wait_s').value)
        statuses: list[Any] = []
        node.create_subscription(
            MemoryStatus, f'{target}/memory_status', statuses.append, QoSProfile(depth=10)
        )
        t0 = time.monotonic()
        ingested = spin_until(
            node, lambda: bool(statuses) and statuses[-1].frames_ingested >= 2, wait_s
        )
        report['discovered_s'] = round(time.monotonic() - t0, 2)
        report['status_messages'] = len(statuses)
        report['frames_ingested'] = int(statuses[-1].frames_ingested) if statuses else 0
        if not ingested:
            raise TimeoutError('no memory status with two frames from the robot')
        client: Any = node.create_client(Ask, f'{target}/ask')
        if not client.wait_for_service(timeout_sec=60.0):
            raise TimeoutError('the ask service is not visible from here')
        future = client.call_async(Ask.Request(question='what happened?', max_new_tokens=6))
        spin_until(node, future.done, 120.0)
        response = future.result()
        report['ask'] = {
            'success': response.success,
            'error': response.error_message,
            'answer_tokens': response.answer_tokens,
            'evidence': len(response.evidence),
        }
        report['stream'] = stream(node, target)
    except Exception as exc:  # the test reads the reason from the report
        report['error'] = f'{type(exc).__name__}: {exc}'
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(report), flush=True)
    return 0


def stream(node: Node, target: str) -> dict[str, Any]:
    action: Any = ActionClient(
        node, AskStream, f'{target}/ask_stream', feedback_sub_qos_profile=QoSProfile(depth=64)
    )
    if not action.wait_for_server(timeout_sec=60.0):
        raise TimeoutError('the ask_stream action is not visible from here')
    feedback: list[Any] = []
    goal = AskStream.Goal(question='and then?', max_new_tokens=8, temperature=0.0)
    sent = action.send_goal_async(goal, feedback_callback=lambda f: feedback.append(f.feedback))
    spin_until(node, sent.done, 60.0)
    handle = sent.result()
    result = handle.get_result_async()
    spin_until(node, result.done, 120.0)
    spin_until(node, lambda: False, 0.5)  # feedback still in flight
    return {
        'accepted': bool(handle.accepted),
        'success': bool(result.result().result.success),
        'feedback': len(feedback),
    }


if __name__ == '__main__':
    sys.exit(main())
