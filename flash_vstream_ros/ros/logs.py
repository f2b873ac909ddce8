"""Logging helpers of the node: the core's ``logging`` bridged to the node logger, and
throttled warnings that say how many were held back."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

CORE_LOGGER = 'flash_vstream_ros'


class NodeLogHandler(logging.Handler):
    """Forwards records of the core library's loggers to an rclpy logger."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self._ros_logger = ros_logger
        self.saved: tuple[int, bool] = (logging.NOTSET, True)  # core logger's level, propagate

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f'[{record.name}] {self.format(record)}'
            if record.levelno >= logging.ERROR:
                self._ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self._ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self._ros_logger.info(text)
            else:
                self._ros_logger.debug(text)
        except Exception:  # a logging handler must not raise into the caller
            self.handleError(record)


def bridge_core_logging(ros_logger: Any, level: int = logging.INFO) -> NodeLogHandler:
    """Attach a NodeLogHandler to the core's root logger; returns it for removal."""
    handler = NodeLogHandler(ros_logger)
    core = logging.getLogger(CORE_LOGGER)
    handler.saved = (core.level, core.propagate)
    core.addHandler(handler)
    core.setLevel(level)
    core.propagate = False  # the node logger already prints to the console
    return handler


def unbridge_core_logging(handler: NodeLogHandler) -> None:
    """Detach ``handler`` and restore the core logger's level and propagation."""
    core = logging.getLogger(CORE_LOGGER)
    core.removeHandler(handler)
    level, core.propagate = handler.saved
    core.setLevel(level)


class Throttle:
    """At most one message of a kind per period; counts the ones held back."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, kind: str, period_s: float, now: float | None = None) -> int | None:
        """None when a message of ``kind`` must be held back; else how many were held back."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < period_s:
                self._held[kind] = self._held.get(kind, 0) + 1
                return None
            self._last[kind] = now
            return self._held.pop(kind, 0)
