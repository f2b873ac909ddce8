"""The pieces of the ingest path: frame checks, per-camera sampling, the drop-oldest queue and
the thumbnails of recent frames.

None of these ever blocks a producer: ``FrameQueue.put`` drops the oldest frame when full, and
the only lock a producer takes is held for a few list operations.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
import math
import threading

import numpy as np

from flash_vstream_ros.errors import BadFrameError
from flash_vstream_ros.stamps import stamp_error, to_ns

THUMB_SIDE = 96  # longest side of a key-frame thumbnail, pixels


@dataclass(frozen=True)
class Frame:
    """One accepted frame waiting for the worker."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    stamp: int  # ns
    camera: str


def check_frame(image: object, stamp: object, camera: object, max_side: int) -> None:
    """Raise BadFrameError naming what is wrong with a submitted frame."""
    if not isinstance(camera, str) or not camera or ',' in camera or '\x00' in camera:
        raise BadFrameError(
            f'camera must be a non-empty string without "," or NUL, got {camera!r}'
        )
    why = stamp_error(stamp)
    if why is not None:
        raise BadFrameError(why)
    if not isinstance(image, np.ndarray):
        raise BadFrameError(f'image must be a numpy array, got {type(image).__name__}')
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BadFrameError(
            f'image must be RGB uint8 (H, W, 3), got {image.dtype} {tuple(image.shape)}'
        )
    h, w = image.shape[:2]
    if h == 0 or w == 0 or max(h, w) > max_side:
        raise BadFrameError(
            f'image size {w}x{h} is outside 1..{max_side} pixels (engine.max_image_side)'
        )


class RateSampler:
    """Per-camera sampling by stamp: keep a frame when it is >= 1/rate after the last kept one.

    Stamps, not arrival times, decide, so a bag replayed at any speed samples the same frames.
    A frame a little older than the last kept frame of its camera is refused (``'back'``); one
    more than ``CLOCK_RESET_S`` older means the camera's clock restarted (a simulator reset, a
    bag played again) and is kept (``'reset'``), so ingest resumes instead of refusing frames
    until the clock catches up.
    A tolerance of 1 % of the period absorbs stamp rounding and jitter (25 fps video sampled
    at 5 Hz keeps every 5th frame even when the stamps are 0.19999 s apart).
    """

    TOLERANCE = 0.01
    CLOCK_RESET_S = 5.0

    def __init__(self, rate_hz: float) -> None:
        self._period = to_ns((1.0 - self.TOLERANCE) / rate_hz) if rate_hz > 0 else 0  # ns
        self._reset = to_ns(self.CLOCK_RESET_S)
        self._last: dict[str, int] = {}

    def decide(self, stamp: int, camera: str) -> str:
        """'accept', 'rate' (skipped on purpose), 'back' (older than the last kept) or 'reset'."""
        last = self._last.get(camera)
        verdict = 'accept'
        if last is not None:
            if stamp < last - self._reset:
                verdict = 'reset'
            elif stamp < last:
                return 'back'
            elif stamp - last < self._period:
                return 'rate'
        self._last[camera] = stamp
        return verdict

    def reset(self) -> None:
        self._last.clear()


class FrameQueue:
    """Bounded FIFO; ``put`` drops the oldest frame when full and says so."""

    def __init__(self, size: int) -> None:
        self._items: deque[Frame] = deque()
        self._size = size
        self._cond = threading.Condition()
        self._busy = False  # the worker holds frames it took but has not finished
        self._closed = False

    def put(self, frame: Frame) -> bool:
        """Queue a frame; False when the oldest queued frame was dropped to make room."""
        with self._cond:
            dropped = len(self._items) >= self._size
            if dropped:
                self._items.popleft()
            self._items.append(frame)
            self._cond.notify_all()
            return not dropped

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def take(self, most: int, timeout: float) -> list[Frame]:
        """Up to ``most`` frames (oldest first); [] after ``timeout`` s or once closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            batch = [self._items.popleft() for _ in range(min(most, len(self._items)))]
            self._busy = bool(batch)
            return batch

    def done(self) -> None:
        """The worker finished the frames of its last ``take``."""
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def clear(self) -> int:
        with self._cond:
            n = len(self._items)
            self._items.clear()
            return n

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued and the worker is not busy."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed


class Thumbnails:
    """Small copies of the most recent frames of each camera (bounded), for key_frames()."""

    def __init__(self, per_camera: int) -> None:
        self._per_camera = max(1, per_camera)
        self._store: dict[str, OrderedDict[int, np.ndarray]] = {}
        self._lock = threading.Lock()

    def add(self, camera: str, stamp: int, image: np.ndarray) -> None:
        thumb = make_thumbnail(image)
        with self._lock:
            frames = self._store.setdefault(camera, OrderedDict())
            frames[stamp] = thumb
            while len(frames) > self._per_camera:
                frames.popitem(last=False)

    def get(self, camera: str, stamp: int) -> np.ndarray | None:
        with self._lock:
            frames = self._store.get(camera)
            return None if frames is None else frames.get(stamp)

    def clear(self) -> None:
        with self._lock:
            self._store.clear()


def make_thumbnail(image: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """Nearest-neighbour shrink so that the longest side is at most ``side``; (h, w, 3)."""
    h, w = image.shape[:2]
    step = max(1, math.ceil(max(h, w) / side))
    return np.ascontiguousarray(image[::step, ::step])
