"""The writer-side stores shared by STAR and synopsis memory: clustered maps and a frame buffer.

Elements (maps) are immutable tensors: an update replaces an element by a new tensor, never
writes into one, so a snapshot holding the old tuple of elements stays valid for free. The
cluster store also keeps writer-private float32 caches, updated in place: its elements as rows
of a matrix and their pairwise squared distances, so a merge step costs O(K P) (two
matrix-vector products), not O(K^2 P). The distance cache is part of the saved state.
"""

from __future__ import annotations

import torch

from flash_vstream_ros.memory import ops
from flash_vstream_ros.memory.prov import Prov
from flash_vstream_ros.memory.snapshot import BufferView, PartView


class ClusterSet:
    """At most ``k`` weighted cluster maps (side x side x D) with provenance.

    The first k frames are stored as they come (no clustering). Then each new frame gives k+1
    points for k clusters: ``weighted`` uses the exact optimum (one Ward merge, ops.best_merge);
    otherwise the released code's step: Lloyd k-means of k+1 unit-weight points from ``init``.
    """

    def __init__(
        self,
        k: int,
        side: int,
        dim: int,
        *,
        weighted: bool,
        init: str,
        iters: int,
        tol: float,
        generator: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.k, self.side, self.dim = k, side, dim
        self.weighted, self.init, self.iters, self.tol = weighted, init, iters, tol
        self.generator = generator
        self.device, self.dtype = device, dtype
        self.reset()

    def reset(self) -> None:
        self.elements: tuple[torch.Tensor, ...] = ()  # each (s, s, D)
        self.prov = Prov.empty()
        k1, p = self.k + 1, self.side * self.side * self.dim
        self.mat = torch.zeros(k1, p, dtype=torch.float32, device=self.device)  # (K+1, P)
        self.sqn = torch.zeros(k1, dtype=torch.float32, device=self.device)  # (K+1,) |row|^2
        self.dist = torch.zeros(k1, k1, dtype=torch.float32, device=self.device)  # (K+1, K+1)

    def __len__(self) -> int:
        return len(self.elements)

    def load(self, maps: torch.Tensor, prov: Prov, dist: torch.Tensor) -> None:
        """maps (n, s, s, D) with n <= k, and their pairwise distance cache dist (n, n)."""
        self.reset()
        n = maps.shape[0]
        self.elements = tuple(maps.to(self.device, self.dtype).unbind(0))
        self.prov = prov
        rows = torch.stack(self.elements).reshape(n, -1).float() if n else self.mat[:0]
        self.mat[:n] = rows
        for r in range(n):  # the very op of _set_row, so the caches match bit for bit
            self.sqn[r] = torch.dot(rows[r], rows[r])
        self.dist[:n, :n] = dist.to(self.device, torch.float32)

    def view(self, name: str, capacity: int) -> PartView:
        """An immutable view for a snapshot (the small distance cache is copied)."""
        n = len(self.elements)
        dist = self.dist[:n, :n].clone()
        return PartView(name, self.side, capacity, self.elements, self.prov, True, dist)

    def add(self, point: torch.Tensor, prov: Prov) -> None:
        """Fold one frame map (s, s, D) with its provenance (one element) in."""
        n = len(self.elements)
        if n < self.k:
            self._set_row(n, point)
            self.elements = (*self.elements, point)
            self.prov = self.prov.cat(prov)
        elif self.weighted:
            self._set_row(n, point)
            self._merge_step(point, prov)
        else:
            self.mat[n] = point.reshape(-1).float()
            self._lloyd_step(prov)

    def _set_row(self, r: int, point: torch.Tensor) -> None:
        """Row r <- point, and its squared distances to every row: one pass over mat."""
        x = point.reshape(-1).float()  # (P,)
        self.mat[r] = x
        self.sqn[r] = torch.dot(x, x)
        d = (self.sqn + self.sqn[r] - 2.0 * (self.mat @ x)).clamp_min_(0.0)  # (K+1,)
        d[r] = 0.0
        self.dist[r] = d
        self.dist[:, r] = d

    def _move_row(self, src: int, dst: int) -> None:
        self.mat[dst] = self.mat[src]
        self.sqn[dst] = self.sqn[src]
        self.dist[dst] = self.dist[src]
        self.dist[:, dst] = self.dist[:, src]
        self.dist[dst, dst] = 0.0

    def _merge_step(self, point: torch.Tensor, prov: Prov) -> None:
        k = self.k
        weights = torch.cat([self.prov.weight, prov.weight])  # (K+1,) float64 on CPU
        i, j = ops.ward_pair(self.dist, weights.to(self.device, torch.float32))  # i < j <= K
        elems = (*self.elements, point)
        wi, wj = float(weights[i]), float(weights[j])
        merged = ops.weighted_merge(elems[i].reshape(-1), elems[j].reshape(-1), wi, wj)
        merged = merged.reshape(point.shape)
        labels = torch.arange(k + 1)
        labels[j] = i
        new_elems = list(self.elements)
        new_elems[i] = merged
        if j < k:  # the new frame takes the freed slot
            labels[k] = j
            new_elems[j] = point
            self._move_row(k, j)
        self._set_row(i, merged)
        self.elements = tuple(new_elems)
        self.prov = self.prov.cat(prov).aggregate(labels, k)

    def _lloyd_step(self, prov: Prov) -> None:
        k = self.k
        x = self.mat  # (K+1, P)
        unit = torch.ones(k + 1, device=self.device)
        if self.init == 'random':
            seeds = ops.random_init(k + 1, k, self.generator).to(self.device)
        else:
            seeds = ops.farthest_point_init(x, unit, k)
        cent, labels = ops.lloyd_kmeans(x, unit, k, self.iters, self.tol, seeds)  # (K, P)
        merged_prov = self.prov.cat(prov).aggregate(labels, k)
        keep = merged_prov.weight > 0  # empty clusters (rare) are dropped
        cent = cent[keep.to(self.device)]
        maps = cent.to(self.dtype).reshape(-1, self.side, self.side, self.dim)  # (K', s, s, D)
        self.elements = tuple(maps.unbind(0))
        self.mat[: len(self.elements)] = cent
        self.sqn.zero_()  # the merge caches are unused on this path
        self.dist.zero_()
        self.prov = merged_prov.take(torch.nonzero(keep).squeeze(1))


class FrameBuffer:
    """The last ``cap`` frame maps (side x side x D), or all of them when ``cap`` is None.

    Next to each map it keeps its retrieval key: the map pooled to ``key_side`` and flattened
    ((P,), memory dtype), the resolution at which frames are compared with cluster centroids.
    Slots are physical: once the buffer wraps, frame number f lives in slot f % cap.
    """

    def __init__(
        self,
        cap: int | None,
        side: int,
        key_side: int,
        dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.cap, self.side, self.key_side, self.dim = cap, side, key_side, dim
        self.device, self.dtype = device, dtype
        self.reset()

    def reset(self) -> None:
        self.slots: list[torch.Tensor] = []  # each (s, s, D), physical order
        self.keys: list[torch.Tensor] = []  # each (k*k*D,)
        self.stamps: list[int] = []  # ns
        self.cams: list[int] = []
        self.head = 0  # physical slot of the oldest frame

    def __len__(self) -> int:
        return len(self.slots)

    def push(self, frame: torch.Tensor, stamp: int, cam_bit: int) -> None:
        """Add one map (s, s, D); the oldest is evicted when the buffer is capped and full."""
        key = ops.pool_map(frame.unsqueeze(0), self.key_side).reshape(-1)  # (P,)
        if self.cap is not None and len(self.slots) == self.cap:
            h = self.head
            self.slots[h], self.keys[h], self.stamps[h], self.cams[h] = frame, key, stamp, cam_bit
            self.head = (h + 1) % self.cap
            return
        self.slots.append(frame)
        self.keys.append(key)
        self.stamps.append(stamp)
        self.cams.append(cam_bit)

    def view(self, capacity: int) -> BufferView:
        """An immutable oldest-first view (shares the map tensors)."""
        h = self.head
        return BufferView(
            self.side,
            capacity,
            tuple(self.slots[h:] + self.slots[:h]),
            tuple(self.keys[h:] + self.keys[:h]),
            tuple(self.stamps[h:] + self.stamps[:h]),
            tuple(self.cams[h:] + self.cams[:h]),
        )

    def load(self, maps: torch.Tensor, stamps: list[int], cams: list[int]) -> None:
        """maps (n, s, s, D), oldest first."""
        self.reset()
        for frame, stamp, cam in zip(
            maps.to(self.device, self.dtype).unbind(0), stamps, cams, strict=True
        ):
            self.push(frame, stamp, cam)
