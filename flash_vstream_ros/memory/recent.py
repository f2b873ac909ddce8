"""The newest frames, kept whole: STAR's spatial part and the "recent" part of either memory.

Recent streaming work finds that the last few frames answer most questions about "now"; the
memory's long-term parts pay off on questions about the past. A FIFO of the newest ``n`` frame
maps (side x side x D) with their provenance; ``push`` returns the frame that leaves it, which
STAR's long-term parts take (memory/star.py).
"""

from __future__ import annotations

import torch

from flash_vstream_ros.memory.prov import Prov
from flash_vstream_ros.memory.snapshot import PartView


class RecentFrames:
    """At most ``n`` frame maps, oldest first; immutable tuples, so snapshots share them."""

    def __init__(self, n: int, side: int) -> None:
        self.n, self.side = n, side
        self.reset()

    def reset(self) -> None:
        self.frames: tuple[torch.Tensor, ...] = ()  # each (s, s, D), oldest first
        self.prov = Prov.empty()

    def __len__(self) -> int:
        return len(self.frames)

    def push(self, frame: torch.Tensor, one: Prov) -> tuple[torch.Tensor, Prov] | None:
        """Add the newest map (s, s, D); returns the (map, provenance) that left, if any."""
        if self.n == 0:
            return None
        frames = (*self.frames, frame)
        both = self.prov.cat(one)
        self.frames = frames[-self.n :]
        self.prov = both.take(torch.arange(len(both))[-self.n :])
        if len(frames) <= self.n:
            return None
        return frames[0], both.take(torch.tensor([0]))

    def view(self, name: str) -> PartView:
        return PartView(name, self.side, self.n, self.frames, self.prov, False)

    def load(
        self, maps: torch.Tensor, prov: Prov, device: torch.device, dtype: torch.dtype
    ) -> None:
        """maps (k, s, s, D) oldest first, k <= n."""
        self.frames = tuple(maps.to(device, dtype).unbind(0))
        self.prov = prov
