"""The timeline: a bounded run of contiguous time segments that window questions can trust.

Why: the temporal clusters merge frames from all of history (a scene that recurs joins one
cluster), so a cluster's span covers the whole run and no time window can select it honestly.
A segment is a run of consecutive frames of one camera, so its span is exactly its members.

Rule (exact greedy bottom-up segmentation, bounded):
* every frame starts a segment of its own (weight 1, mean = the frame at ``segment_size``);
* while more than ``segments`` exist, the adjacent pair (two consecutive segments of one
  camera) whose merged segment would have the least squared error is merged (bottom-up
  segmentation): cost = E_i + E_j + w_i w_j / (w_i + w_j) ||m_i - m_j||^2, where E is a
  segment's sum of squared distances of its frames to its mean (exact under merges: the last
  term is the Ward cost of the memory's one-merge k-means step, restricted to neighbours in
  time). The Ward term alone would let one long tail segment swallow every new frame (its cost
  against a single frame stays ~||x - m||^2 however mixed the tail is); counting the merged
  error keeps segments balanced. Ties go to the earliest pair. Each frame adds one segment, so
  once full each frame costs exactly one merge;
* each segment keeps a representative frame at ``frame_size`` (its map and exact stamp): on a
  merge, of the two segments' representatives the one whose map (pooled to ``segment_size``)
  lies nearer to the merged mean (the earlier on ties). So an old segment keeps a sharp key
  frame after the feature buffer has moved on.
Cost per frame: one pair cost for the new segment, and after a merge two more (the merged
segment with its two neighbours): O(P) tensor work, P = segment_size^2 D, plus a scan of the
K cached costs (Python floats). Nothing depends on how long the robot has run. The cost cache
is a pure function of the means, weights and errors, so it is rebuilt on load, not saved
(the errors are: ``timeline.sse``).
"""

from __future__ import annotations

import math

import torch

from flash_vstream_ros.memory import ops
from flash_vstream_ros.memory.prov import Prov
from flash_vstream_ros.memory.snapshot import PartView

INF = math.inf


class Timeline:
    """At most ``k`` segments: mean maps (s, s, D), representative frames (f, f, D), provenance."""

    def __init__(
        self, k: int, side: int, frame_side: int, device: torch.device, dtype: torch.dtype
    ):
        self.k, self.side, self.frame_side = k, side, frame_side
        self.device, self.dtype = device, dtype
        self.reset()

    def reset(self) -> None:
        self.means: list[torch.Tensor] = []  # each (s, s, D), by start stamp
        self.frames: list[torch.Tensor] = []  # each (f, f, D): the representative frames
        self.prov = Prov.empty()  # segments
        self.sse: list[float] = []  # per segment: sum of squared distances of frames to mean
        self.frame_prov = Prov.empty()  # representative frames (weight 1 each)
        self.costs: list[float] = []  # cost of merging segment i with its camera's next one

    def __len__(self) -> int:
        return len(self.means)

    def add(self, mean: torch.Tensor, frame: torch.Tensor, one: Prov) -> None:
        """Fold one frame in: its map at segment_size (s, s, D), at frame_size (f, f, D)."""
        if self.k == 0:
            return
        self.means.append(mean)
        self.frames.append(frame)
        self.prov = self.prov.cat(one)
        self.frame_prov = self.frame_prov.cat(one)
        self.sse.append(0.0)
        self.costs.append(INF)
        n = len(self.means) - 1
        prev = self._neighbour(n, -1)
        if prev is not None:
            self.costs[prev] = self._pair_cost(prev, n)
        if len(self.means) > self.k:
            self._merge_cheapest()

    def _neighbour(self, i: int, step: int) -> int | None:
        """The index of the previous (step -1) or next (+1) segment of i's camera."""
        cam = int(self.prov.cams[i])
        j = i + step
        while 0 <= j < len(self.means):
            if int(self.prov.cams[j]) == cam:
                return j
            j += step
        return None

    def _ward(self, i: int, j: int) -> float:
        wi, wj = float(self.prov.weight[i]), float(self.prov.weight[j])
        d = self.means[i].float() - self.means[j].float()  # (s, s, D)
        return wi * wj / (wi + wj) * float(torch.dot(d.reshape(-1), d.reshape(-1)))

    def _pair_cost(self, i: int, j: int) -> float:
        """Squared error of the segment that merging i and j would make."""
        return self.sse[i] + self.sse[j] + self._ward(i, j)

    def _merge_cheapest(self) -> None:
        i = min(range(len(self.costs)), key=self.costs.__getitem__)  # first on ties
        j = self._neighbour(i, +1)
        assert j is not None, 'a finite cost always has a next segment'
        wi, wj = float(self.prov.weight[i]), float(self.prov.weight[j])
        merged = ops.weighted_merge(
            self.means[i].reshape(-1), self.means[j].reshape(-1), wi, wj
        ).reshape(self.means[i].shape)  # (s, s, D)
        keep = i if self._rep_distance(i, merged) <= self._rep_distance(j, merged) else j
        self.sse[i] = self.sse[i] + self.sse[j] + self._ward(i, j)
        labels = torch.arange(len(self.means))
        labels[j] = i
        labels[j + 1 :] -= 1
        self.prov = self.prov.aggregate(labels, len(self.means) - 1)
        self.means[i], self.frames[i] = merged, self.frames[keep]
        rep = self.frame_prov.take(torch.tensor([keep]))
        self.frame_prov = self.frame_prov.put(i, rep)
        gone = [x for x in range(len(self.means)) if x != j]
        self.frame_prov = self.frame_prov.take(torch.tensor(gone))
        del self.means[j], self.frames[j], self.costs[j], self.sse[j]
        nxt = self._neighbour(i, +1)
        self.costs[i] = INF if nxt is None else self._pair_cost(i, nxt)
        prev = self._neighbour(i, -1)
        if prev is not None:
            self.costs[prev] = self._pair_cost(prev, i)

    def _rep_distance(self, i: int, mean: torch.Tensor) -> float:
        key = ops.pool_map(self.frames[i], self.side).float() - mean.float()  # (s, s, D)
        return float(torch.dot(key.reshape(-1), key.reshape(-1)))

    def views(self) -> tuple[PartView, PartView]:
        """Immutable views: the segment means and their representative frames."""
        sse = torch.tensor(self.sse, dtype=torch.float64)  # (n,), saved as timeline.sse
        means = PartView(
            'timeline',
            self.side,
            self.k,
            tuple(self.means),
            self.prov,
            True,
            None,
            'timeline',
            sse,
        )
        frames = PartView(
            'timeline_frames',
            self.frame_side,
            self.k,
            tuple(self.frames),
            self.frame_prov,
            True,
            role='timeline',
        )
        return means, frames

    def load(
        self, means: torch.Tensor, prov: Prov, frames: torch.Tensor, fprov: Prov, sse: torch.Tensor
    ) -> None:
        """means (n, s, s, D) and frames (n, f, f, D) by start stamp, with their provenance,
        and the segments' squared errors sse (n,)."""
        self.reset()
        self.means = list(means.to(self.device, self.dtype).unbind(0))
        self.frames = list(frames.to(self.device, self.dtype).unbind(0))
        self.prov, self.frame_prov = prov, fprov
        self.sse = [float(v) for v in sse.tolist()]
        self.costs = [INF] * len(self.means)
        for i in range(len(self.means)):
            nxt = self._neighbour(i, +1)
            if nxt is not None:
                self.costs[i] = self._pair_cost(i, nxt)
