"""What readers see of the memories: one immutable view, swapped in by one reference."""

from __future__ import annotations

from dataclasses import dataclass

from flash_vstream_ros.memory.base import MemorySnapshot

SHARED = '*'  # key of the one memory when memory.per_camera is False


@dataclass(frozen=True)
class View:
    """Every memory's snapshot (sorted by key) and a version that grows with each publish."""

    snapshots: tuple[tuple[str, MemorySnapshot], ...] = ()
    version: int = 0

    def cameras(self) -> tuple[str, ...]:
        return tuple(sorted({c for _, s in self.snapshots for c in s.cameras}))

    def span(self, cameras: tuple[str, ...] = ()) -> tuple[int, int] | None:
        """(oldest, newest) stamp in ns over the memories holding ``cameras`` (() = all)."""
        snaps = [s for _, s in self.snapshots if not cameras or set(s.cameras) & set(cameras)]
        spans = [sp for s in snaps if (sp := s.span()) is not None]
        if not spans:
            return None
        return min(a for a, _ in spans), max(b for _, b in spans)

    def frames_seen(self) -> int:
        return sum(s.frames_seen for _, s in self.snapshots)

    def nbytes(self) -> int:
        return sum(s.nbytes for _, s in self.snapshots)

    def fill(self) -> tuple[tuple[str, int, int], ...]:
        """(part, used, capacity) summed over memories, in readout order."""
        merged: dict[str, list[int]] = {}
        for _, snap in self.snapshots:
            for part, (used, cap) in snap.fill().items():
                slot = merged.setdefault(part, [0, 0])
                slot[0] += used
                slot[1] += cap
        return tuple((part, u, c) for part, (u, c) in merged.items())

    def token_budget(self, max_visual_tokens: int) -> int:
        """Visual tokens one answer may read: the setting, or one full memory's capacity."""
        if max_visual_tokens > 0:
            return max_visual_tokens
        return max(
            (sum(cap for _, cap in s.fill().values()) for _, s in self.snapshots), default=0
        )
