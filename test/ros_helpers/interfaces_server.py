"""Test-only server of every flash_vstream_ros interface (plus std_srvs/Trigger).

Started by test/test_interfaces_roundtrip.py as its own process:
    python interfaces_server.py --ros-args -r __node:=server -r __ns:=/fvs_rt
Answers deterministically from the request, so the client process can check each field.
"""

from __future__ import annotations

import threading
import time

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from std_srvs.srv import Trigger

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.msg import Evidence, MemoryStatus
from flash_vstream_ros.srv import Ask, MemoryFile

FEEDBACK_PERIOD_S = 0.05


class InterfacesServer(Node):
    """One service or action per interface, answering from the request's own fields."""

    def __init__(self) -> None:
        super().__init__('interfaces_server')
        group = ReentrantCallbackGroup()
        self.create_service(Ask, '~/ask', self._ask, callback_group=group)
        self.create_service(MemoryFile, '~/save_memory', self._save, callback_group=group)
        self.create_service(MemoryFile, '~/load_memory', self._load, callback_group=group)
        self.create_service(Trigger, '~/reset_memory', self._reset, callback_group=group)
        self._resets = 0
        self._lock = threading.Lock()
        self._action = ActionServer(
            self,
            AskStream,
            '~/ask_stream',
            execute_callback=self._ask_stream,
            goal_callback=self._accept,
            cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=group,
        )

    def _status(self) -> MemoryStatus:
        status = MemoryStatus(state='active', model='test:echo', memory_kind='star')
        status.header.stamp = self.get_clock().now().to_msg()
        status.cameras = ['front']
        status.parts = ['spatial', 'temporal']
        status.part_used = [64, 400]
        status.part_capacity = [64, 400]
        return status

    def _ask(self, request: Ask.Request, response: Ask.Response) -> Ask.Response:
        if not request.question:
            response.success = False
            response.error_message = 'question is empty'
            return response
        response.success = True
        response.answer = f'echo: {request.question}'
        response.evidence = [
            Evidence(
                part='spatial',
                camera=camera,
                stamp=request.window_start,
                start=request.window_start,
                end=request.window_end,
                weight=float(index + 1),
            )
            for index, camera in enumerate(request.cameras)
        ]
        response.answer_tokens = len(request.question.split())
        response.visual_tokens = request.max_new_tokens
        response.latency_s = request.window_last_s
        response.stop_reason = 'eos'
        response.memory = self._status()
        return response

    def _file(
        self, verb: str, request: MemoryFile.Request, response: MemoryFile.Response
    ) -> MemoryFile.Response:
        response.success = bool(request.path)
        response.message = f'{verb} {request.path}' if request.path else 'no path'
        response.path = request.path
        response.frames = 7
        response.bytes = len(request.path)
        return response

    def _save(
        self, request: MemoryFile.Request, response: MemoryFile.Response
    ) -> MemoryFile.Response:
        return self._file('saved', request, response)

    def _load(
        self, request: MemoryFile.Request, response: MemoryFile.Response
    ) -> MemoryFile.Response:
        return self._file('loaded', request, response)

    def _reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._resets += 1
            response.message = f'reset {self._resets}'
        response.success = True
        return response

    def _accept(self, goal: AskStream.Goal) -> GoalResponse:
        return GoalResponse.ACCEPT if goal.question else GoalResponse.REJECT

    def _ask_stream(self, goal_handle: ServerGoalHandle) -> AskStream.Result:
        words = goal_handle.request.question.split()
        limit = goal_handle.request.max_new_tokens or len(words)
        partial: list[str] = []
        result = AskStream.Result(success=True, stop_reason='eos')
        topic = self.resolve_topic_name('~/ask_stream') + '/_action/feedback'
        deadline = time.monotonic() + 1.0  # as the node does: a just-matched client's feedback
        while self.count_subscribers(topic) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for word in words[:limit]:
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result.stop_reason = 'cancelled'
                break
            partial.append(word)
            goal_handle.publish_feedback(
                AskStream.Feedback(
                    text=word, partial_answer=' '.join(partial), answer_tokens=len(partial)
                )
            )
            time.sleep(FEEDBACK_PERIOD_S)
        else:
            if limit < len(words):
                result.stop_reason = 'length'
            goal_handle.succeed()
        result.answer = ' '.join(partial)
        result.answer_tokens = len(partial)
        result.memory = self._status()
        return result


def main() -> None:
    rclpy.init()
    node = InterfacesServer()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    print('interfaces_server: ready', flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
