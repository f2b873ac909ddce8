"""Flash Memory of Flash-VStream v2 (arXiv 2506.23825): context synopsis + detail augmentation.

Per new frame e_t (H, W, D):
* synopsis (Context Synopsis Memory): weighted k-means of half-resolution maps
  (pool(e_t, cluster_size), 8x8 = 64 tokens) into ``clusters`` clusters, exactly as STAR's
  temporal part (first frames as they come, then one Ward merge per frame); read out ordered by
  time (weighted mean stamp);
* detail (Detail Augmentation Memory): for the ``detail_frames`` largest clusters, the
  full-resolution frame (detail_size, 16x16 = 256 tokens) of a capped buffer nearest to the
  centroid (compared at cluster resolution); read out ordered by stamp.
* recent (``recent_frames``, 0 by default as in v2): the newest frames at ``recent_size``.
Default budget 60 x 64 + 30 x 256 = 11,520 tokens; a small-Jetson budget is 15 x 64 + 0.
The timeline (memory/timeline.py) serves window questions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from flash_vstream_ros.config import SynopsisConfig, TimelineConfig, to_dict
from flash_vstream_ros.memory import ops
from flash_vstream_ros.memory.loading import check_meta, dist_from_state, part_from_state
from flash_vstream_ros.memory.prov import Prov
from flash_vstream_ros.memory.recent import RecentFrames
from flash_vstream_ros.memory.snapshot import KeyFrames, Snapshot
from flash_vstream_ros.memory.stream import StreamBase


class SynopsisMemory(StreamBase):
    """The v2 Flash Memory (implements StreamMemory)."""

    kind = 'synopsis'

    def __init__(
        self,
        cfg: SynopsisConfig,
        dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        timeline: TimelineConfig | None = None,
    ) -> None:
        self.cfg = cfg
        super().__init__(dim, device, dtype, 0, timeline)
        self.reset()

    def reset(self) -> None:
        c = self.cfg
        self._reset_common()
        self.synopsis = self._cluster_set(
            c.clusters, c.cluster_size, c.kmeans_weighted, 'deterministic', 10, 1e-4
        )
        self.buffer = self._frame_buffer(c.buffer_frames, c.detail_size, c.cluster_size)
        self.recent = RecentFrames(c.recent_frames, c.recent_size)

    def update(self, features: torch.Tensor, stamp: int, camera: str) -> None:
        x = self._check_frame(features, stamp)  # (H, W, D)
        bit = self._camera_bit(camera)
        c = self.cfg
        one = Prov.frame(stamp, bit)
        sides = {c.cluster_size, c.detail_size, c.recent_size, *self._timeline_sides()}
        pooled = {s: ops.pool_map(x, s) for s in sides}  # side -> (s, s, D)
        if c.detail_frames > 0:
            self.buffer.push(pooled[c.detail_size], stamp, bit)
        self.synopsis.add(pooled[c.cluster_size], one)
        self._add_to_timeline(pooled, one)
        if c.recent_frames:  # a copy: its bytes never depend on which other part shares it
            self.recent.push(pooled[c.recent_size].clone(), one)
        self.frames += 1

    def snapshot(self) -> Snapshot:
        c = self.cfg
        buffer = self.buffer.view(c.buffer_frames)
        synopsis = self.synopsis.view('synopsis', c.clusters)
        detail = KeyFrames('detail', c.detail_frames, 'paper', True, synopsis, buffer)
        recent = self.recent.view('recent')
        parts = (
            synopsis,
            detail,
            *((recent,) if c.recent_frames else ()),
            *self._timeline_parts(),
        )
        return self._snapshot(parts, buffer)

    def config_dict(self) -> dict[str, Any]:
        return self._with_timeline(to_dict(self.cfg))

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        c = self.cfg
        check_meta(meta, self.kind, self.config_dict(), self.dim)
        common = self._check_common(tensors, meta)
        n_cams = len(common[0])
        synopsis = part_from_state(
            tensors, 'synopsis', c.cluster_size, self.dim, c.clusters, n_cams
        )
        dist = dist_from_state(tensors, 'synopsis', synopsis[0].shape[0])
        buffer = part_from_state(
            tensors, 'buffer', c.detail_size, self.dim, c.buffer_frames, n_cams
        )
        recent = None
        if c.recent_frames:
            recent = part_from_state(
                tensors, 'recent', c.recent_size, self.dim, c.recent_frames, n_cams
            )
        timeline = self._timeline_from_state(tensors, n_cams)
        self.reset()
        self._load_common(common)
        self.synopsis.load(*synopsis, dist)
        self._load_buffer(*buffer)
        if recent is not None:
            self.recent.load(*recent, self.device, self.dtype)
        self._load_timeline(timeline)
