"""Helpers of the ros-tier node tests: nodes as subprocesses, an in-process client.

The node and the camera run as subprocesses with the Fast DDS loopback profile (16 MB shared
memory, UDP on 127.0.0.1 only), so 640x480 frames at 30 Hz pass best effort. The test's own
client joins the same ROS domain in-process (discovery on localhost) and only exchanges small
messages with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
import threading
import time
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from flash_vstream_ros.engine import EngineStatus
from flash_vstream_ros.ros.procs import (  # noqa: F401 (re-exported to the test modules)
    Proc,
    ros_env,
    start,
    start_camera,
    start_node,
    write_params,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
# How long a node just started may take to show up (subscriptions matched, first status):
# torch + transformers imports and the tiny model take ~10 s on an idle 2-core machine, and
# over a minute when it is oversubscribed five times (a stress run beside other jobs).
NODE_START_S = 240.0


class Client:
    """An in-process node on the test's domain, spun by a background executor.

    Entities (subscriptions, publishers, clients) are created and destroyed on the executor
    (:meth:`on_executor`), never from the test's thread while the executor spins: rclpy
    raises InvalidHandle in the spinning thread when an entity goes under its feet.

    Goals are sent on the executor too (:meth:`send_goal`), and the executor has one thread:
    rclpy 9.1.2's ``ActionClient.send_goal_async`` registers its goal future under its lock,
    then replaces it with a second future outside the lock. A goal response taken by another
    thread in between completes the first future, and the one returned never completes (a
    goal "without response", seen under CPU load). On the one spinning thread nothing runs
    in between.
    """

    def __init__(self, domain_id: int, name: str = 'test_client') -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self.received: dict[str, list[Any]] = {}
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def subscribe(self, msg_type: Any, topic: str, best_effort: bool = False) -> None:
        qos = QoSProfile(
            depth=50,
            reliability=ReliabilityPolicy.BEST_EFFORT
            if best_effort
            else ReliabilityPolicy.RELIABLE,
        )
        self.received[topic] = []

        def keep(msg: Any) -> None:
            with self._lock:
                self.received[topic].append(msg)

        self.on_executor(lambda: self.node.create_subscription(msg_type, topic, keep, qos))

    def on_executor(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` as a task of the spinning executor and return its result."""
        return result_of(self.executor.create_task(fn), timeout, f'executor task {fn!r}')

    def send_goal(
        self, action: Any, goal: Any, feedback_callback: Callable[[Any], None] | None = None
    ) -> Any:
        """``action.send_goal_async`` on the spinning thread: the goal handle's future."""
        return self.on_executor(
            lambda: action.send_goal_async(goal, feedback_callback=feedback_callback)
        )

    def messages(self, topic: str) -> list[Any]:
        with self._lock:
            return list(self.received[topic])

    def latest(self, topic: str, timeout: float = 30.0) -> Any:
        wait_for(lambda: bool(self.messages(topic)), timeout, f'a message on {topic}')
        return self.messages(topic)[-1]

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 60.0) -> Any:
        client: Any = self.on_executor(lambda: self.node.create_client(srv_type, name))
        try:
            assert client.wait_for_service(timeout_sec=timeout), f'service {name} not available'
            future = client.call_async(request)
            return result_of(future, timeout, f'response of {name}')
        finally:
            self.on_executor(lambda: self.node.destroy_client(client))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(5.0)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.05)


def result_of(future: Any, timeout: float, what: str) -> Any:
    wait_for(future.done, timeout, what)
    return future.result()


def poll_until(
    get: Callable[[], Any], done: Callable[[Any], bool], timeout: float, what: str
) -> Any:
    """Call ``get`` until ``done(value)``; returns that value. A timeout names the last value
    (for a status: what the node had counted), so a failed run says how far it got."""
    box: list[Any] = []

    def check() -> bool:
        box[:] = [get()]
        return done(box[0])

    try:
        wait_for(check, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f'{exc}\nlast value: {box[0] if box else "none"}') from None
    return box[0]


def iter_lines(text: str, needle: str) -> Iterator[str]:
    return (line for line in text.splitlines() if needle in line)


def engine_status(**changes: object) -> EngineStatus:
    """A plausible EngineStatus for conversion tests, with ``changes`` applied."""
    values: dict[str, object] = {
        'state': 'running',
        'model': 'tiny',
        'memory_kind': 'star',
        'frames_received': 100,
        'frames_ingested': 10,
        'frames_skipped_rate': 88,
        'frames_dropped_queue': 1,
        'frames_rejected': 1,
        'ingest_rate_hz': 2.0,
        'encode_ms': 12.5,
        'update_ms': 0.5,
        'cameras': ('front',),
        'fill': (('temporal', 80, 400), ('spatial', 64, 64)),
        'visual_tokens': 144,
        'memory_bytes': 4096,
        'oldest_stamp': 10_000_000_000,  # ns
        'newest_stamp': 15_500_000_000,  # ns
        'questions_answered': 2,
        'questions_failed': 1,
        'last_answer_latency_s': 0.5,
        'answer_latency_p50_s': 0.4,
        'gpu_memory_used_bytes': 0,
        'gpu_memory_peak_bytes': 0,
        'gpu_memory_budget_bytes': 0,
    }
    values.update(changes)
    return EngineStatus(**values)  # type: ignore[arg-type]
