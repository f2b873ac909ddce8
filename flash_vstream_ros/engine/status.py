"""Value types of the engine's API (questions, answers, status) and its running statistics."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import statistics
import threading
import time

from flash_vstream_ros.memory.base import Evidence, TimeWindow


@dataclass(frozen=True)
class Question:
    """A question about what the cameras have seen, with its optional restrictions."""

    text: str
    window: TimeWindow | None = None
    last_s: float = 0.0  # only the last N s before the newest memory (0 = off)
    cameras: tuple[str, ...] = ()  # () = all cameras
    max_new_tokens: int = 0  # 0 = config default; above the config limit: clamped
    temperature: float | None = None  # None = config default


@dataclass(frozen=True)
class EngineStatus:
    """A consistent picture of the engine at one instant (what ~/memory_status publishes)."""

    state: str  # created | starting | running | stopping | stopped | failed
    model: str
    memory_kind: str
    frames_received: int
    frames_ingested: int
    frames_skipped_rate: int
    frames_dropped_queue: int
    frames_rejected: int
    ingest_rate_hz: float
    encode_ms: float
    update_ms: float
    cameras: tuple[str, ...]
    fill: tuple[tuple[str, int, int], ...]  # (part, used tokens, capacity), readout order
    visual_tokens: int
    memory_bytes: int
    oldest_stamp: int | None  # ns
    newest_stamp: int | None  # ns
    questions_answered: int
    questions_failed: int
    last_answer_latency_s: float
    answer_latency_p50_s: float
    gpu_memory_used_bytes: int
    gpu_memory_peak_bytes: int
    gpu_memory_budget_bytes: int


@dataclass(frozen=True)
class Answer:
    """An answer with the memory elements it drew on."""

    text: str
    evidence: tuple[Evidence, ...]
    latency_s: float  # from the call of Engine.ask to the complete answer (queueing included)
    answer_tokens: int
    visual_tokens: int
    stop_reason: str  # eos | length | cancelled
    status: EngineStatus


@dataclass(frozen=True)
class SaveInfo:
    """Where a memory file was written or read, and what it holds."""

    path: str
    frames: int
    bytes: int


class Counters:
    """Monotonic frame and question counters plus recent timings, safe across threads."""

    RECENT = 50  # timings averaged over this many recent samples
    RATE_WINDOW_S = 10.0  # ingest rate measured over this many seconds

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.frames_received = 0
        self.frames_ingested = 0
        self.frames_skipped_rate = 0
        self.frames_dropped_queue = 0
        self.frames_rejected = 0
        self.questions_answered = 0
        self.questions_failed = 0
        self.last_answer_latency_s = 0.0
        self._encode_ms: deque[float] = deque(maxlen=self.RECENT)
        self._update_ms: deque[float] = deque(maxlen=self.RECENT)
        self._latencies: deque[float] = deque(maxlen=self.RECENT)
        self._ingest_times: deque[float] = deque()
        self._started = time.monotonic()

    def add(self, name: str, n: int = 1) -> None:
        """Increase one counter (``frames_received`` ...) by ``n``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def ingested(self, encode_ms: float, update_ms: float) -> None:
        """One frame folded into memory, with its share of encode time and its update time."""
        now = time.monotonic()
        with self._lock:
            self.frames_ingested += 1
            self._encode_ms.append(encode_ms)
            self._update_ms.append(update_ms)
            self._ingest_times.append(now)
            self._trim(now)

    def answered(self, latency_s: float) -> None:
        with self._lock:
            self.questions_answered += 1
            self.last_answer_latency_s = latency_s
            self._latencies.append(latency_s)

    def _trim(self, now: float) -> None:
        while self._ingest_times and self._ingest_times[0] < now - self.RATE_WINDOW_S:
            self._ingest_times.popleft()

    def snapshot(self) -> dict[str, float | int]:
        """Counters and derived rates, all read under one lock."""
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            span = min(self.RATE_WINDOW_S, max(now - self._started, 1e-3))
            return {
                'frames_received': self.frames_received,
                'frames_ingested': self.frames_ingested,
                'frames_skipped_rate': self.frames_skipped_rate,
                'frames_dropped_queue': self.frames_dropped_queue,
                'frames_rejected': self.frames_rejected,
                'questions_answered': self.questions_answered,
                'questions_failed': self.questions_failed,
                'last_answer_latency_s': self.last_answer_latency_s,
                'answer_latency_p50_s': _median(self._latencies),
                'encode_ms': _mean(self._encode_ms),
                'update_ms': _mean(self._update_ms),
                'ingest_rate_hz': len(self._ingest_times) / span,
            }


def _mean(values: deque[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _median(values: deque[float]) -> float:
    return statistics.median(values) if values else 0.0
