"""Provenance of memory elements: time span, weight and cameras, as small CPU tensors.

Every memory element (a frame map, a cluster centroid, a timeline segment, an abstract slot)
carries ``start``/``end`` (earliest/latest stamp absorbed, int64 nanoseconds, exact),
``weight`` (frames it stands for), ``off`` (the weight-summed offsets of its stamps from
``start``, float64 ns; the mean stamp is start + off / weight) and ``cams`` (bitmask of camera
ids). Offsets rather than absolute sums keep the mean exact to well below a microsecond (an
absolute sum of 1.8e18 ns stamps would keep only 256 ns), and a single frame's stamp is its
exact header stamp. Provenance objects are immutable: every update builds new tensors, so
snapshots can share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

F64 = torch.float64
I64 = torch.long
MAX_CAMERAS = 62  # bits of an int64 mask we use
NO_STAMP = torch.iinfo(I64).max


@dataclass(frozen=True)
class Prov:
    """Provenance of N elements; every field is a CPU tensor of shape (N,)."""

    off: torch.Tensor  # (N,) float64, sum of weight * (stamp - start), ns
    weight: torch.Tensor  # (N,) float64, frames absorbed
    start: torch.Tensor  # (N,) int64 ns
    end: torch.Tensor  # (N,) int64 ns
    cams: torch.Tensor  # (N,) int64 camera bitmask

    FIELDS = ('off', 'weight', 'start', 'end', 'cams')
    DTYPES: ClassVar[dict[str, torch.dtype]] = {
        'off': F64,
        'weight': F64,
        'start': I64,
        'end': I64,
        'cams': I64,
    }

    @staticmethod
    def empty() -> Prov:
        z, i = torch.zeros(0, dtype=F64), torch.zeros(0, dtype=I64)
        return Prov(z, z, i, i, i)

    @staticmethod
    def frame(stamp: int, cam_bit: int) -> Prov:
        """One frame: weight 1, span [stamp, stamp]."""
        return Prov.frames([stamp], [cam_bit])

    @staticmethod
    def frames(stamps: list[int], cam_bits: list[int]) -> Prov:
        """Single frames: weight 1 each, span [stamp, stamp]."""
        s = torch.tensor(stamps, dtype=I64)
        n = s.shape[0]
        return Prov(
            torch.zeros(n, dtype=F64),
            torch.ones(n, dtype=F64),
            s,
            s.clone(),
            torch.tensor(cam_bits, dtype=I64),
        )

    def __len__(self) -> int:
        return int(self.weight.shape[0])

    @property
    def stamp(self) -> torch.Tensor:
        """(N,) int64 weight-averaged stamp, within [start, end] (a frame's: its own stamp)."""
        rel = torch.round(self.off / self.weight.clamp_min(1e-12)).to(I64)
        return torch.minimum(self.start + rel.clamp_min(0), self.end)

    def cat(self, other: Prov) -> Prov:
        return Prov(*(torch.cat([getattr(self, f), getattr(other, f)]) for f in self.FIELDS))

    def take(self, idx: torch.Tensor) -> Prov:
        idx = idx.cpu()
        return Prov(*(getattr(self, f)[idx] for f in self.FIELDS))

    def put(self, i: int, other: Prov) -> Prov:
        """A copy with element i replaced by the single element of ``other``."""
        fields = []
        for f in self.FIELDS:
            t = getattr(self, f).clone()
            t[i] = getattr(other, f)[0]
            fields.append(t)
        return Prov(*fields)

    def aggregate(self, labels: torch.Tensor, k: int) -> Prov:
        """Group the N elements into k by ``labels`` (N,): sums, min/max, OR of masks."""
        labels = labels.cpu()
        start = torch.full((k,), NO_STAMP, dtype=I64).scatter_reduce_(
            0, labels, self.start, 'amin'
        )
        end = torch.full((k,), -NO_STAMP, dtype=I64).scatter_reduce_(0, labels, self.end, 'amax')
        shift = (self.start - start[labels]).to(F64)  # (N,) >= 0: own start after the group's
        off = torch.zeros(k, dtype=F64).index_add_(0, labels, self.off + self.weight * shift)
        weight = torch.zeros(k, dtype=F64).index_add_(0, labels, self.weight)
        bits = unpack_bits(self.cams)  # (N, B)
        hits = torch.zeros(k, MAX_CAMERAS, dtype=I64).index_add_(0, labels, bits)
        return Prov(off, weight, start, end, pack_bits(hits > 0))

    def absorb(self, chunk: Prov, alpha: float) -> Prov:
        """Every element absorbs a chunk of frames with rate alpha (the abstract memory's EMA
        in time: the mean stamp moves by alpha toward the chunk's mean stamp)."""
        lo, hi = int(chunk.start.min()), int(chunk.end.max())
        start = self.start.clamp(max=lo)
        chunk_w = float(chunk.weight.sum())
        chunk_mean = float(((chunk.start - lo).to(F64) * chunk.weight + chunk.off).sum()) / chunk_w
        own = (self.start - start).to(F64) + self.off / self.weight.clamp_min(1e-12)  # rel. start
        mean = (1.0 - alpha) * own + alpha * ((lo - start).to(F64) + chunk_mean)  # (N,) rel.
        weight = self.weight + chunk_w
        cams = self.cams | or_all(chunk.cams)
        return Prov(mean * weight, weight, start, self.end.clamp(min=hi), cams)


def or_all(masks: torch.Tensor) -> int:
    """The OR of (N,) int64 camera masks."""
    out = 0
    for m in masks.tolist():
        out |= m
    return out


def unpack_bits(mask: torch.Tensor) -> torch.Tensor:
    """(N,) int64 masks -> (N, MAX_CAMERAS) 0/1 int64."""
    shifts = torch.arange(MAX_CAMERAS, dtype=I64)
    return (mask[:, None] >> shifts) & 1


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """(N, MAX_CAMERAS) bool -> (N,) int64 masks."""
    shifts = torch.arange(MAX_CAMERAS, dtype=I64)
    return (bits.long() << shifts).sum(-1)
