"""What differs between the rclpy releases this package runs on (Humble, Jazzy, Kilted).

Humble's rclpy has no ``Node.resolve_topic_name`` and no post-set parameter callbacks; older
releases may lack ``SignalHandlerOptions`` and ``ExternalShutdownException``. The node and the
client use these helpers instead of the newer API.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.node import Node

try:
    from rclpy.executors import ExternalShutdownException
except ImportError:  # rclpy before Humble

    class ExternalShutdownException(Exception):  # type: ignore[no-redef]  # noqa: N818
        """Stand-in: never raised by an rclpy that does not define it."""


__all__ = [
    'ExternalShutdownException',
    'guard_teardown',
    'init_without_signal_handlers',
    'resolve_topic',
    'stopped_by_shutdown',
    'topic_of',
]


def init_without_signal_handlers(args: list[str] | None) -> None:
    """rclpy.init that leaves SIGINT/SIGTERM to the caller (the context stays valid)."""
    try:
        from rclpy.signals import SignalHandlerOptions
    except ImportError:  # the caller's signal.signal() replaces rclpy's handlers instead
        rclpy.init(args=args)
        return
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def resolve_topic(node: Node, topic: str) -> str:
    """The fully qualified name of ``topic`` for ``node`` (remaps applied where rclpy can)."""
    resolve = getattr(node, 'resolve_topic_name', None)
    if resolve is not None:  # rclpy >= Iron: expansion and remapping
        return str(resolve(topic))
    if topic.startswith('/'):
        return topic
    if topic.startswith('~'):
        return node.get_fully_qualified_name() + topic[1:]
    return f'{node.get_namespace().rstrip("/")}/{topic}'


def topic_of(node: Node, subscription: Any, topic: str) -> str:
    """The name a subscription really has (after remapping), on every rclpy release."""
    name = getattr(subscription, 'topic_name', None)
    return str(name) if name else resolve_topic(node, topic)


def stopped_by_shutdown(context: Any = None) -> bool:
    """True when the context has been shut down (SIGINT): an rclpy error raised then (a wait set
    or a publish on an invalid context, seen under load between a loop's ``rclpy.ok()`` and
    its next call) is the stop that was asked for, not a failure."""
    return not rclpy.ok(context=context)


def guard_teardown(seconds: float, what: str, code: int = 0) -> None:
    """Exit with ``code`` if the ROS teardown that follows takes longer than ``seconds``.

    For tools whose work is done and on disk (the recorder, once its bag is closed): destroying
    the node, shutting rclpy down and the interpreter's exit (Fast DDS joins its threads) hung
    once on a loaded CI machine after every message had been written. The stacks of all threads
    go to stderr first, so such a hang says where it was.
    """

    def expire() -> None:
        time.sleep(seconds)
        print(f'{what}: ROS teardown not done after {seconds:g} s; exiting', file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=expire, name='teardown-guard', daemon=True).start()
