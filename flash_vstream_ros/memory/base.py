"""What every streaming memory offers its readers: the protocol and the readout types.

A memory is written by one thread (the ingest worker) and read by others through immutable
snapshots. Stamps are integer nanoseconds (ROS header time, exactly; see flash_vstream_ros.stamps).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class TimeWindow:
    """A closed time interval in integer nanoseconds; None on either side means unbounded."""

    start: int | None = None
    end: int | None = None

    def overlaps(self, lo: int, hi: int) -> bool:
        """True when [lo, hi] meets the window."""
        return (self.start is None or hi >= self.start) and (self.end is None or lo <= self.end)

    def contains(self, t: int) -> bool:
        return self.overlaps(t, t)


@dataclass(frozen=True)
class Evidence:
    """One memory element a readout used: which part, which camera, which time span."""

    # 'abstract' | 'temporal' | 'retrieved' | 'spatial' | 'synopsis' | 'detail' | 'recent' |
    # 'timeline' (a segment's mean) | 'timeline_frames' | 'frames' (single frames)
    part: str
    camera: str  # camera name; ','-joined names when a shared-memory element mixes cameras
    stamp: int  # ns: a frame's own stamp, or an element's weight-averaged stamp
    start: int  # ns: earliest stamp absorbed
    end: int  # ns: latest stamp absorbed
    weight: float  # frames this element stands for


@dataclass(frozen=True)
class Readout:
    """Memory tokens for the language model, in readout order, with their provenance."""

    tokens: torch.Tensor  # (N, D) on the memory's device and dtype
    parts: tuple[tuple[str, int], ...]  # (part name, token count) in readout order
    evidence: tuple[Evidence, ...]

    @property
    def span(self) -> tuple[int, int] | None:
        """(earliest, latest) stamp (ns) over the evidence, None when empty."""
        if not self.evidence:
            return None
        return min(e.start for e in self.evidence), max(e.end for e in self.evidence)


class MemorySnapshot(Protocol):
    """An immutable view of a memory at one instant; cheap to take, safe to share."""

    @property
    def frames_seen(self) -> int: ...

    @property
    def nbytes(self) -> int: ...

    @property
    def cameras(self) -> tuple[str, ...]: ...

    def span(self) -> tuple[int, int] | None:
        """(oldest, newest) stamp (ns) the memory covers, None when empty."""
        ...

    def fill(self) -> dict[str, tuple[int, int]]:
        """Part name -> (tokens held, token budget), in readout order."""
        ...

    def readout(
        self, window: TimeWindow | None = None, cameras: Collection[str] | None = None
    ) -> Readout:
        """Tokens restricted to elements stamped inside ``window`` and from ``cameras``."""
        ...

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Serialisable state: tensors (for safetensors) and JSON-able metadata."""
        ...


class StreamMemory(Protocol):
    """A fixed-size memory folded from a stream of frame feature maps."""

    def update(self, features: torch.Tensor, stamp: int, camera: str) -> None:
        """Fold one frame in. features: (H, W, D) encoder patch map, e.g. (16, 16, 1024);
        stamp: integer nanoseconds, not older than the camera's previous frame."""
        ...

    def snapshot(self) -> MemorySnapshot: ...

    def reset(self) -> None: ...

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        """Replace the state with one produced by ``MemorySnapshot.state`` (validated)."""
        ...
