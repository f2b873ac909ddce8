"""One question on the model at a time, at most ``size`` waiting; the rest get BusyError."""

from __future__ import annotations

import threading

from flash_vstream_ros.engine.runtime import POLL_S
from flash_vstream_ros.errors import BusyError, NotReadyError


class QuestionGate:
    """A fair-enough FIFO of questions in front of the model (see the module docstring)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.cond = threading.Condition()
        self.active = False
        self.waiting = 0
        self.closed = False

    def enter(self, cancel: threading.Event | None) -> bool:
        """Take the model; False when cancelled while waiting. BusyError when the queue is full."""
        with self.cond:
            if self.full():
                raise BusyError(
                    f'busy: one question is being answered and {self.waiting} wait '
                    f'(engine.question_queue_size={self.size}); retry later'
                )
            self.waiting += 1
            try:
                while self.active and not self.closed:
                    if cancel is not None and cancel.is_set():
                        return False
                    self.cond.wait(POLL_S)
                if self.closed:
                    raise NotReadyError('engine stopped while the question waited')
                self.active = True
                return True
            finally:
                self.waiting -= 1

    def in_flight(self) -> int:
        """Questions on the model (0 or 1) plus those waiting, whoever asked them."""
        with self.cond:
            return int(self.active) + self.waiting

    def full(self) -> bool:
        """True when one more question would get BusyError now (the condition's lock is
        reentrant: enter() asks this while holding it)."""
        with self.cond:
            return self.active and self.waiting >= self.size

    def leave(self) -> None:
        with self.cond:
            self.active = False
            self.cond.notify_all()

    def open(self) -> None:
        with self.cond:
            self.closed = False

    def close(self) -> None:
        """Refuse new and waiting questions (the one on the model finishes)."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_free(self, timeout: float) -> bool:
        """Wait until no answer is running (before the weights go); False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: not self.active, timeout=timeout)
