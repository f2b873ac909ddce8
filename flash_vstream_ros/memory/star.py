"""STAR memory of Flash-VStream v1: Spatial, Temporal, Abstract, Retrieved (arXiv 2406.08085).

Per new frame e_t (H, W, D), with the paper's defaults (681 tokens in all):
* spatial: FIFO of the newest ``spatial_frames`` maps pooled to 8x8;
* temporal: weighted k-means (K=25) of the old 4x4 centroids (weight = frames) plus
  pool(e_t, 4x4): once full, exactly one Ward merge (ops.best_merge); kmeans_weighted=False is
  the released code (Lloyd on K+1 unit-weight points from the configured start);
* abstract: M <- (1-a) M + a softmax(q(M) k(E)^T / sqrt(d)) E with E = pool(e_t, 1x1);
  q/k are the model's trained projections or the identity (plain scaled dot product);
* retrieved: for the 3 largest temporal clusters, the buffered 8x8 frame nearest to the
  centroid (compared at 4x4); retrieval='released' takes buffer frame number = cluster id.
  A pure function of temporal memory and buffer, evaluated by the snapshot when read.
The first frames of the temporal and abstract parts are stored as they come (no clustering).
Readout order: [abstract, temporal (by mean stamp), retrieved (largest cluster first), spatial].
"""

from __future__ import annotations

from collections.abc import Mapping
import logging
from typing import Any

import torch
from torch import nn

from flash_vstream_ros.config import StarConfig, to_dict
from flash_vstream_ros.errors import ConfigError
from flash_vstream_ros.memory import ops
from flash_vstream_ros.memory.prov import Prov
from flash_vstream_ros.memory.snapshot import (
    KeyFrames,
    PartView,
    Snapshot,
    check_meta,
    dist_from_state,
    part_from_state,
)
from flash_vstream_ros.memory.stream import StreamBase

log = logging.getLogger(__name__)


class StarMemory(StreamBase):
    """The STAR memory (implements StreamMemory)."""

    kind = 'star'

    def __init__(
        self,
        cfg: StarConfig,
        dim: int,
        qk: tuple[nn.Module, nn.Module] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if cfg.abstract_projection == 'learned' and qk is None:
            raise ConfigError(
                "StarConfig.abstract_projection is 'learned' but the model has no "
                "trained q/k projections; use 'auto' or 'identity'"
            )
        self.cfg = cfg
        self.qk = None if cfg.abstract_projection == 'identity' else qk
        super().__init__(dim, device, dtype, seed=cfg.seed)
        self.reset()

    def reset(self) -> None:
        c = self.cfg
        self._reset_common()
        self.temporal = self._cluster_set(
            c.temporal_clusters,
            c.temporal_size,
            c.kmeans_weighted,
            c.kmeans_init,
            c.kmeans_iters,
            c.kmeans_tol,
        )
        self.buffer = self._frame_buffer(
            c.buffer_frames if c.buffer_capped else None, c.retrieved_size, c.temporal_size
        )
        self.spatial: tuple[torch.Tensor, ...] = ()  # each (s, s, D), oldest first
        self.spatial_prov = Prov.empty()
        self.abstract = torch.zeros(
            0, c.abstract_size, c.abstract_size, self.dim, dtype=self.dtype, device=self.device
        )  # (n, a, a, D)
        self.abstract_prov = Prov.empty()

    def update(self, features: torch.Tensor, stamp: float, camera: str) -> None:
        x = self._check_frame(features, stamp)  # (H, W, D)
        bit = self._camera_bit(camera)
        c = self.cfg
        one = Prov.frame(stamp, bit)
        sides = {c.spatial_size, c.retrieved_size, c.temporal_size, c.abstract_size}
        pooled = {s: ops.pool_map(x, s) for s in sides}  # side -> (s, s, D), each pooled once
        self._update_spatial(pooled[c.spatial_size], one)
        self.buffer.push(pooled[c.retrieved_size], stamp, bit)
        self.temporal.add(pooled[c.temporal_size], one)
        self._update_abstract(pooled[c.abstract_size], stamp, bit)
        self.frames += 1

    def _update_spatial(self, frame: torch.Tensor, prov: Prov) -> None:
        n = self.cfg.spatial_frames
        self.spatial = (*self.spatial, frame)[-n:]
        both = self.spatial_prov.cat(prov)
        self.spatial_prov = both.take(torch.arange(len(both))[-n:])

    def _update_abstract(self, e: torch.Tensor, stamp: float, bit: int) -> None:
        c = self.cfg
        if c.abstract_slots == 0:
            return
        if self.abstract.shape[0] < c.abstract_slots:  # first frames: stored as they come
            self.abstract = torch.cat([self.abstract, e.unsqueeze(0)])  # (n+1, a, a, D)
            self.abstract_prov = self.abstract_prov.cat(Prov.frame(stamp, bit))
            return
        m = self.abstract.reshape(-1, self.dim)  # (S*a*a, D)
        q, k = self.qk if self.qk is not None else (None, None)
        new = ops.semantic_attention(m, e.reshape(-1, self.dim), c.abstract_alpha, q, k)
        self.abstract = new.reshape(self.abstract.shape)  # (S, a, a, D)
        self.abstract_prov = self.abstract_prov.absorb(stamp, bit, c.abstract_alpha)

    def snapshot(self) -> Snapshot:
        c = self.cfg
        buffer = self.buffer.view(c.buffer_frames)
        temporal = self.temporal.view('temporal', c.temporal_clusters)
        parts = (
            PartView(
                'abstract',
                c.abstract_size,
                c.abstract_slots,
                tuple(self.abstract.unbind(0)),
                self.abstract_prov,
                False,
            ),
            temporal,
            KeyFrames('retrieved', c.retrieved_frames, c.retrieval, False, temporal, buffer),
            PartView(
                'spatial', c.spatial_size, c.spatial_frames, self.spatial, self.spatial_prov, False
            ),
        )
        return self._snapshot(parts, buffer)

    def config_dict(self) -> dict[str, Any]:
        return to_dict(self.cfg)

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        c = self.cfg
        check_meta(meta, self.kind, self.config_dict(), self.dim)
        sizes = {
            'abstract': (c.abstract_size, c.abstract_slots),
            'temporal': (c.temporal_size, c.temporal_clusters),
            'spatial': (c.spatial_size, c.spatial_frames),
        }
        loaded = {n: part_from_state(tensors, n, s, self.dim, k) for n, (s, k) in sizes.items()}
        dist = dist_from_state(tensors, 'temporal', loaded['temporal'][0].shape[0])
        buf_cap = c.buffer_frames if c.buffer_capped else None
        buffer = part_from_state(tensors, 'buffer', c.retrieved_size, self.dim, buf_cap)
        common = self._check_common(tensors, meta)
        self.reset()
        self._load_common(common)
        maps, prov = loaded['abstract']
        self.abstract, self.abstract_prov = maps.to(self.device, self.dtype), prov
        self.temporal.load(*loaded['temporal'], dist)
        maps, prov = loaded['spatial']
        self.spatial, self.spatial_prov = tuple(maps.to(self.device, self.dtype)), prov
        self._load_buffer(*buffer)
        log.debug('loaded STAR memory state: %d frames', self.frames)
