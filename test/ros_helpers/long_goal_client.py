"""Test-only client: sends one long ~/ask_stream goal, says so, then spins until killed.

    python long_goal_client.py /ns/flash_vstream/ask_stream
Prints ``feedback`` once the first feedback arrives (the goal is on the model), then never
exits by itself: the test kills it by PID to play a client that died mid-answer.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.action import ActionClient

from flash_vstream_ros.action import AskStream

WAIT_S = 30.0


def main() -> int:
    rclpy.init()
    node = rclpy.create_node('long_goal_client')
    client: Any = ActionClient(node, AskStream, sys.argv[1])
    if not client.wait_for_server(timeout_sec=WAIT_S):
        print('no server', flush=True)
        return 1
    said: list[bool] = []

    def on_feedback(msg: Any) -> None:
        if not said:
            said.append(True)
            print('feedback', flush=True)

    goal = AskStream.Goal(question='describe everything', temperature=-1.0)
    client.send_goal_async(goal, feedback_callback=on_feedback)
    rclpy.spin(node)
    return 0


if __name__ == '__main__':
    sys.exit(main())
