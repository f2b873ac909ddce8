"""Immutable memory snapshots: readout with time/camera filters, and a serialisable state.

A snapshot holds references to the writer's element tensors and provenance tensors. The
writer never mutates those (it replaces them), so taking a snapshot copies no tensor data:
a few tuples of references (see benchmarks/bench_memory.py for the microseconds). Take
snapshots on the writer's thread (between updates); hand them to any number of readers.

Key frames (STAR's retrieved part, synopsis's detail part) are a pure function of the clusters
and the feature buffer, so a snapshot computes them on first use (readout, fill is free) and
caches them: the writer's per-frame cost stays independent of the buffer size.

Roles of stored parts: 'open' parts make the paper's readout (questions without a window);
'timeline' parts are read by window questions only (memory/windowed.py); 'hidden' parts are
state only (the abstract memory's pending chunk).

State format (``format_version`` 2): tensors ``{part}.maps`` (n, s, s, D) plus ``{part}.off``,
``.weight`` (float64), ``.start``, ``.end`` (int64 nanoseconds) and ``.cams`` (int64) for every
stored part and for ``buffer`` (the feature buffer, oldest first; key frames are recomputed
from it), ``{part}.dist`` for cluster parts, and ``rng`` (uint8, the k-means generator).
Metadata: format_version, kind, config, dim, dtype, cameras (id -> name), frames_seen.
Version 1 (float-second stamps) is refused: its stamps cannot be restored to the nanosecond.
Loading checks values, not only shapes: finite maps and caches, weights >= 1, start <= end,
mean offsets within the span, camera bits of known cameras.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import torch

from flash_vstream_ros.memory import ops
from flash_vstream_ros.memory.base import Evidence, Readout, TimeWindow
from flash_vstream_ros.memory.prov import Prov
from flash_vstream_ros.memory.windowed import window_readout

FORMAT_VERSION = 2
ROLES = ('open', 'timeline', 'hidden')


@dataclass(frozen=True)
class PartView:
    """One memory part at one instant: element maps (each (s, s, D)) and their provenance."""

    name: str
    side: int  # each element is side x side tokens
    capacity: int  # elements at full budget
    elements: tuple[torch.Tensor, ...]
    prov: Prov
    by_time: bool  # readout sorted by mean stamp (else storage order)
    dist: torch.Tensor | None = None  # (n, n) merge-distance cache of a cluster part
    role: str = 'open'  # see the module docstring
    sse: torch.Tensor | None = None  # (n,) float64 squared error of each timeline segment

    @property
    def tokens_per_element(self) -> int:
        return self.side * self.side

    def with_name(self, name: str) -> PartView:
        return replace(self, name=name)


@dataclass(frozen=True)
class BufferView:
    """The feature buffer at one instant, oldest first."""

    side: int
    capacity: int
    elements: tuple[torch.Tensor, ...]  # each (s, s, D)
    keys: tuple[torch.Tensor, ...]  # each (P,): the map pooled to the clusters' side
    stamps: tuple[int, ...]  # ns
    cams: tuple[int, ...]  # camera bits

    @cached_property
    def prov(self) -> Prov:
        """Frame provenance, built on first use (taking a snapshot stays a few tuple copies)."""
        return Prov.frames(list(self.stamps), list(self.cams))

    def as_part(self) -> PartView:
        return PartView('buffer', self.side, self.capacity, self.elements, self.prov, False)


@dataclass(frozen=True)
class KeyFrames:
    """Buffered frames nearest to the ``count`` largest clusters, computed on demand.

    mode 'paper': the frame whose key is nearest to the centroid; 'released': the buffer frame
    whose oldest-first number equals the cluster's index (the released code's behaviour).
    Read out largest cluster first (``by_time`` False) or by stamp.
    """

    name: str
    count: int
    mode: str  # 'paper' | 'released'
    by_time: bool
    clusters: PartView
    buffer: BufferView

    @property
    def held(self) -> int:
        return min(self.count, len(self.clusters.elements), len(self.buffer.elements))

    def resolve(self) -> PartView:
        top = ops.largest(self.clusters.prov.weight, self.held)  # (R,) cluster ids
        if self.mode == 'paper' and len(top):
            cents = torch.stack([self.clusters.elements[i] for i in top.tolist()])  # (R, k, k, D)
            keys = torch.stack(self.buffer.keys)  # (N, P)
            idx = ops.nearest_frames(keys, cents.reshape(len(top), -1)).cpu()  # (R,)
        else:
            idx = ops.released_frames(top, len(self.buffer.elements))
        frames = tuple(self.buffer.elements[i] for i in idx.tolist())
        return PartView(
            self.name,
            self.buffer.side,
            self.count,
            frames,
            self.buffer.prov.take(idx),
            self.by_time,
        )


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of a StarMemory or SynopsisMemory (implements MemorySnapshot)."""

    kind: str
    config: dict[str, Any]
    dim: int
    dtype: torch.dtype
    device: torch.device
    camera_names: tuple[str, ...]  # index = camera id
    frames: int
    stored: tuple[PartView | KeyFrames, ...]  # in readout order
    buffer: BufferView
    rng: torch.Tensor  # (n,) uint8 generator state

    @cached_property
    def parts(self) -> tuple[PartView, ...]:
        """The open parts in readout order, key frames resolved (once per snapshot)."""
        return tuple(
            p.resolve() if isinstance(p, KeyFrames) else p
            for p in self.stored
            if isinstance(p, KeyFrames) or p.role == 'open'
        )

    def stored_part(self, name: str) -> PartView | None:
        """The stored part called ``name`` (key frames resolved), None when absent."""
        for p in self.stored:
            if p.name == name:
                return p.resolve() if isinstance(p, KeyFrames) else p
        return None

    @property
    def has_timeline(self) -> bool:
        return any(isinstance(p, PartView) and p.role == 'timeline' for p in self.stored)

    @property
    def frames_seen(self) -> int:
        return self.frames

    @property
    def cameras(self) -> tuple[str, ...]:
        return self.camera_names

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors held: maps of every part, the buffer and its keys (shared once).

        A hidden part (the abstract memory's pending chunk, which fills and empties) counts at
        its capacity, so the figure is flat once the memory is full.
        """
        seen: dict[int, int] = {}
        stored = [p for p in self.stored if isinstance(p, PartView) and p.role != 'hidden']
        tensors = [t for p in stored for t in p.elements]
        for t in (*tensors, *self.buffer.elements, *self.buffer.keys):
            seen[id(t)] = t.numel() * t.element_size()
        hidden = [p for p in self.stored if isinstance(p, PartView) and p.role == 'hidden']
        item = torch.tensor([], dtype=self.dtype).element_size()
        reserved = sum(p.capacity * p.side * p.side * self.dim * item for p in hidden)
        return sum(seen.values()) + reserved

    def fill(self) -> dict[str, tuple[int, int]]:
        """Tokens held and budget of the parts of an open readout (the paper's)."""
        out = {}
        for p in self.stored:
            if isinstance(p, PartView) and p.role != 'open':
                continue
            side, cap = (
                (self.buffer.side, p.count) if isinstance(p, KeyFrames) else (p.side, p.capacity)
            )
            held = p.held if isinstance(p, KeyFrames) else len(p.elements)
            out[p.name] = (held * side * side, cap * side * side)
        return out

    def span(self) -> tuple[int, int] | None:
        stored = [p for p in self.stored if isinstance(p, PartView) and len(p.prov)]
        stored += [self.buffer.as_part()] if self.buffer.elements else []
        starts = [int(p.prov.start.min()) for p in stored]
        ends = [int(p.prov.end.max()) for p in stored]
        return (min(starts), max(ends)) if starts else None

    def readout(
        self, window: TimeWindow | None = None, cameras: Collection[str] | None = None
    ) -> Readout:
        """Tokens (N, D) for a question on ``window`` (None: all time) and ``cameras``.

        Without a window: the paper's readout. With one: what lies in the window, read from the
        timeline when the memory keeps one (memory/windowed.py), else the elements whose mean
        stamp lies in it (the paper's memory has no notion of time).
        """
        mask = self._camera_mask(cameras)
        if window is not None and self.has_timeline:
            return window_readout(self, window, mask)
        chunks: list[torch.Tensor] = []
        counts: list[tuple[str, int]] = []
        evidence: list[Evidence] = []
        for part in self.parts:
            idx = _select(part, window, mask)
            chunks.extend(part.elements[i].reshape(-1, self.dim) for i in idx)  # each (s*s, D)
            counts.append((part.name, len(idx) * part.tokens_per_element))
            evidence.extend(self.evidence(part, idx))
        tokens = (
            torch.cat(chunks)
            if chunks
            else torch.zeros(0, self.dim, dtype=self.dtype, device=self.device)
        )
        return Readout(tokens=tokens, parts=tuple(counts), evidence=tuple(evidence))

    def _camera_mask(self, cameras: Collection[str] | None) -> int | None:
        if cameras is None or len(cameras) == 0:
            return None
        ids = [i for i, n in enumerate(self.camera_names) if n in set(cameras)]
        return sum(1 << i for i in ids)  # 0 when none is known: nothing matches

    def evidence(self, part: PartView, idx: list[int]) -> list[Evidence]:
        p = part.prov
        stamp, start, end = p.stamp.tolist(), p.start.tolist(), p.end.tolist()
        weight, cams = p.weight.tolist(), p.cams.tolist()
        return [
            Evidence(
                part=part.name,
                camera=self.camera_label(cams[i]),
                stamp=stamp[i],
                start=start[i],
                end=end[i],
                weight=weight[i],
            )
            for i in idx
        ]

    def camera_label(self, mask: int) -> str:
        """Camera bitmask -> ','-joined names."""
        return ','.join(n for i, n in enumerate(self.camera_names) if mask >> i & 1)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """CPU tensors (contiguous, ready for safetensors) and JSON-able metadata."""
        tensors: dict[str, torch.Tensor] = {'rng': self.rng.clone()}
        saved = [p for p in self.stored if isinstance(p, PartView)] + [self.buffer.as_part()]
        for part in saved:
            tensors.update(_part_tensors(part, self.dim, self.dtype))
        meta = {
            'format_version': FORMAT_VERSION,
            'kind': self.kind,
            'config': self.config,
            'dim': self.dim,
            'dtype': str(self.dtype).removeprefix('torch.'),
            'cameras': list(self.camera_names),
            'frames_seen': self.frames,
            'parts': {p.name: len(p.elements) for p in saved},
        }
        return tensors, meta


def _select(part: PartView, window: TimeWindow | None, mask: int | None) -> list[int]:
    """Indices of the elements that pass the filters, in readout order."""
    p = part.prov
    keep = torch.ones(len(p), dtype=torch.bool)
    if window is not None:  # by the element's own (weight-averaged) stamp: see memory/__init__
        stamp = p.stamp
        if window.start is not None:
            keep &= stamp >= window.start
        if window.end is not None:
            keep &= stamp <= window.end
    if mask is not None:
        keep &= (p.cams & mask) != 0
    order = torch.argsort(p.stamp, stable=True) if part.by_time else torch.arange(len(p))
    return [int(i) for i in order if keep[i]]


def _part_tensors(part: PartView, dim: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    s = part.side
    maps = (
        torch.stack(part.elements) if part.elements else torch.zeros(0, s, s, dim, dtype=dtype)
    )  # (n, s, s, D)
    out = {f'{part.name}.maps': maps.contiguous().cpu()}
    for f in Prov.FIELDS:
        out[f'{part.name}.{f}'] = getattr(part.prov, f).clone()
    if part.dist is not None:
        out[f'{part.name}.dist'] = part.dist.cpu()
    if part.sse is not None:
        out[f'{part.name}.sse'] = part.sse.clone()
    return out
