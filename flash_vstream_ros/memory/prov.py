"""Provenance of memory elements: time span, weight and cameras, as small CPU tensors.

Every memory element (a frame map, a cluster centroid, an abstract slot) carries:
``ssum`` (weight-summed stamp; the mean stamp is ssum / weight), ``weight`` (frames it stands
for), ``start``/``end`` (earliest/latest stamp absorbed) and ``cams`` (bitmask of camera ids).
Keeping the sum rather than the mean makes merges exact: a singleton's stamp never drifts.
Provenance objects are immutable: every update builds new tensors, so snapshots can share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

F64 = torch.float64
MAX_CAMERAS = 62  # bits of an int64 mask we use


@dataclass(frozen=True)
class Prov:
    """Provenance of N elements; every field is a CPU tensor of shape (N,)."""

    ssum: torch.Tensor  # (N,) float64, sum of weight * stamp
    weight: torch.Tensor  # (N,) float64, frames absorbed
    start: torch.Tensor  # (N,) float64
    end: torch.Tensor  # (N,) float64
    cams: torch.Tensor  # (N,) int64 camera bitmask

    FIELDS = ('ssum', 'weight', 'start', 'end', 'cams')

    @staticmethod
    def empty() -> Prov:
        z = torch.zeros(0, dtype=F64)
        return Prov(z, z, z, z, torch.zeros(0, dtype=torch.long))

    @staticmethod
    def frame(stamp: float, cam_bit: int) -> Prov:
        """One frame: weight 1, span [stamp, stamp]."""
        s = torch.tensor([stamp], dtype=F64)
        return Prov(s, torch.ones(1, dtype=F64), s, s, torch.tensor([cam_bit], dtype=torch.long))

    def __len__(self) -> int:
        return int(self.weight.shape[0])

    @property
    def stamp(self) -> torch.Tensor:
        """(N,) weight-averaged stamp, clamped into [start, end] against rounding."""
        mean = self.ssum / self.weight.clamp_min(1e-12)
        return torch.minimum(torch.maximum(mean, self.start), self.end)

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
        ssum = torch.zeros(k, dtype=F64).index_add_(0, labels, self.ssum)
        weight = torch.zeros(k, dtype=F64).index_add_(0, labels, self.weight)
        start = torch.full((k,), torch.inf, dtype=F64).scatter_reduce_(
            0, labels, self.start, 'amin'
        )
        end = torch.full((k,), -torch.inf, dtype=F64).scatter_reduce_(0, labels, self.end, 'amax')
        bits = unpack_bits(self.cams)  # (N, B)
        hits = torch.zeros(k, MAX_CAMERAS, dtype=torch.long).index_add_(0, labels, bits)
        return Prov(ssum, weight, start, end, pack_bits(hits > 0))

    def absorb(self, stamp: float, cam_bit: int, alpha: float) -> Prov:
        """Every element absorbs one frame with rate alpha (the abstract memory's EMA in time)."""
        weight = self.weight + 1.0
        mean = (1.0 - alpha) * self.stamp + alpha * stamp
        return Prov(
            mean * weight,
            weight,
            self.start.clamp(max=stamp),
            self.end.clamp(min=stamp),
            self.cams | cam_bit,
        )


def unpack_bits(mask: torch.Tensor) -> torch.Tensor:
    """(N,) int64 masks -> (N, MAX_CAMERAS) 0/1 int64."""
    shifts = torch.arange(MAX_CAMERAS, dtype=torch.long)
    return (mask[:, None] >> shifts) & 1


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """(N, MAX_CAMERAS) bool -> (N,) int64 masks."""
    shifts = torch.arange(MAX_CAMERAS, dtype=torch.long)
    return (bits.long() << shifts).sum(-1)
