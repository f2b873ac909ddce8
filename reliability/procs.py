"""Node and camera subprocesses on loopback, and the suite's in-process ROS client.

Every process gets the suite's ROS_DOMAIN_ID and the Fast DDS loopback profile (16 MB shared
memory, UDP on 127.0.0.1 only); every one is ended by its own PID.
"""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from flash_vstream_ros.ros.procs import (  # noqa: F401 (the suite's modules use them from here)
    Proc,
    ros_env,
    start,
    start_camera,
    write_params,
)
from flash_vstream_ros.ros.procs import poll as wait_for


def use_domain(domain_id: int) -> None:
    """Point this process's own ROS client at the suite's domain and the loopback profile."""
    for key, value in ros_env(domain_id).items():
        if key.startswith(('ROS_', 'FASTDDS_')):
            os.environ[key] = value


def start_node(params: Path, domain_id: int, log: Path, namespace: str, module: str) -> Proc:
    """``module`` (the node, or the suite's faulty variant of it) under ``namespace``."""
    args = [sys.executable, '-m', module, '--ros-args', '--params-file', str(params)]
    return start([*args, '-r', f'__ns:={namespace}'], domain_id, log)


class Client:
    """An in-process node on the suite's domain, spun by a background executor.

    Entities are created as tasks of the spinning executor (:meth:`on_executor`), never from
    the caller's thread while it spins (rclpy's entities are not safe to add or remove under a
    spinning wait set). Goals are sent there too, on the executor's one thread
    (:func:`ask_action`): rclpy 9.1.2's ``ActionClient.send_goal_async`` replaces its goal
    future outside its lock, so a response taken by another thread in between is lost and the
    goal looks hung.
    """

    def __init__(self, domain_id: int, name: str = 'reliability_client') -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self._latest: dict[str, Any] = {}
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def keep_latest(self, msg_type: Any, topic: str) -> None:
        def keep(msg: Any) -> None:
            with self._lock:
                self._latest[topic] = msg

        self.on_executor(lambda: self.node.create_subscription(msg_type, topic, keep, 10))

    def on_executor(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` as a task of the spinning executor; its result (or its exception)."""
        task = self.executor.create_task(fn)
        deadline = time.monotonic() + timeout
        while not task.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f'executor task {fn!r} did not run within {timeout} s')
            time.sleep(0.005)
        return task.result()

    def latest(self, topic: str) -> Any:
        with self._lock:
            return self._latest.get(topic)

    def publisher(self, msg_type: Any, topic: str, reliable: bool = True) -> Any:
        qos = QoSProfile(
            depth=1000,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        return self.on_executor(lambda: self.node.create_publisher(msg_type, topic, qos))

    def service(self, srv_type: Any, name: str) -> Any:
        return self.on_executor(lambda: self.node.create_client(srv_type, name))

    def action(self, action_type: Any, name: str) -> ActionClient:
        return self.on_executor(lambda: ActionClient(self.node, action_type, name))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(5.0)


def call(client: Any, request: Any, timeout: float) -> Any | None:
    """A service response, or None when none came within ``timeout`` (a hang)."""
    future = client.call_async(request)
    if not wait_for(future.done, timeout):
        client.remove_pending_request(future)
        return None
    return future.result()


def ask_action(owner: Client, client: ActionClient, goal: Any, timeout: float) -> tuple[str, Any]:
    """('rejected', None), ('hang', what is missing) or (status, result) of one goal of
    ``client``, an action client of ``owner``'s node."""
    deadline = time.monotonic() + timeout
    sent = owner.on_executor(lambda: client.send_goal_async(goal))
    if not wait_for(sent.done, timeout):
        return 'hang', 'no goal response'
    handle = sent.result()
    if handle is None or not handle.accepted:
        return 'rejected', None
    result = handle.get_result_async()
    if not wait_for(result.done, max(0.0, deadline - time.monotonic())):
        return 'hang', 'no result'
    res = result.result()
    if res is None:
        return 'hang', 'empty result'
    return str(res.status), res.result
