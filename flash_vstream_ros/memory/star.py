"""STAR memory of Flash-VStream v1: Spatial, Temporal, Abstract, Retrieved (arXiv 2406.08085).

Per new frame e_t (H, W, D), with the paper's defaults (681 tokens in all):
* spatial (the recent frames): FIFO of the newest ``spatial_frames`` maps pooled to 8x8;
* long-term parts take a frame when it leaves the spatial FIFO (``long_term_after_recent``,
  as the research code's evaluation path leaves the current frames out of them), from its
  spatial map pooled further (16 -> 8 -> 4 equals 16 -> 4 exactly for divisible grids):
* temporal: weighted k-means (K=25) of the old 4x4 centroids (weight = frames) plus the new
  4x4 map: once full, exactly one Ward merge (ops.best_merge); kmeans_weighted=False is
  the released code (Lloyd on K+1 unit-weight points from the configured start);
* abstract: once per chunk of ``abstract_chunk`` frames (the research code: as many as there
  are slots), M <- (1-a) M + a softmax(q(M) k(E)^T / sqrt(d)) E with E the chunk's 1x1 tokens
  (C, D) as keys; q/k are the model's trained projections or the identity. With one frame per
  update (abstract_chunk=1) and 1x1 slots the softmax has one key, every slot gets the same
  update and the part collapses to a moving average repeated; chunks keep the slots apart;
* retrieved: for the 3 largest temporal clusters, the buffered 8x8 frame nearest to the
  centroid (compared at 4x4); retrieval='released' takes buffer frame number = cluster id.
  A pure function of temporal memory and buffer, evaluated by the snapshot when read.
The first frames of the temporal and abstract parts are stored as they come (no clustering).
Readout order: [abstract, temporal (by mean stamp), retrieved (largest cluster first), spatial].
The timeline (memory/timeline.py; every frame at once) serves window questions.
"""

from __future__ import annotations

from collections.abc import Mapping
import logging
from typing import Any

import torch
from torch import nn

from flash_vstream_ros.config import StarConfig, TimelineConfig, to_dict
from flash_vstream_ros.errors import ConfigError
from flash_vstream_ros.memory import ops
from flash_vstream_ros.memory.loading import check_meta, dist_from_state, part_from_state
from flash_vstream_ros.memory.prov import Prov
from flash_vstream_ros.memory.recent import RecentFrames
from flash_vstream_ros.memory.snapshot import KeyFrames, PartView, Snapshot
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
        timeline: TimelineConfig | None = None,
    ) -> None:
        if cfg.abstract_projection == 'learned' and qk is None:
            raise ConfigError(
                "StarConfig.abstract_projection is 'learned' but the model has no "
                "trained q/k projections; use 'auto' or 'identity'"
            )
        self.cfg = cfg
        self.qk = None if cfg.abstract_projection == 'identity' else qk
        super().__init__(dim, device, dtype, cfg.seed, timeline)
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
        self.spatial_part = RecentFrames(c.spatial_frames, c.spatial_size)
        self.recent = RecentFrames(c.recent_frames, c.recent_size)
        self.abstract = self._no_slots()  # (n, a, a, D)
        self.abstract_prov = Prov.empty()
        self.chunk = self._no_slots()  # (c, a, a, D): frames waiting for the next update
        self.chunk_prov = Prov.empty()

    def _no_slots(self) -> torch.Tensor:
        a = self.cfg.abstract_size
        return torch.zeros(0, a, a, self.dim, dtype=self.dtype, device=self.device)

    def update(self, features: torch.Tensor, stamp: int, camera: str) -> None:
        x = self._check_frame(features, stamp)  # (H, W, D)
        bit = self._camera_bit(camera)
        c = self.cfg
        one = Prov.frame(stamp, bit)
        sides = {c.spatial_size, c.retrieved_size, *self._timeline_sides()}
        sides |= {c.recent_size} if c.recent_frames else set()
        if not c.long_term_after_recent:
            sides |= {c.temporal_size, c.abstract_size}
        pooled = {s: ops.pool_map(x, s) for s in sides}  # side -> (s, s, D), each pooled once
        self.buffer.push(pooled[c.retrieved_size], stamp, bit)
        self._add_to_timeline(pooled, one)
        leaving = self.spatial_part.push(pooled[c.spatial_size], one)
        if c.recent_frames:  # a copy: its bytes never depend on which other part shares it
            self.recent.push(pooled[c.recent_size].clone(), one)
        if not c.long_term_after_recent:
            self._long_term(pooled[c.temporal_size], pooled[c.abstract_size], one)
        elif leaving is not None:
            old, prov = leaving  # (s, s, D): the spatial map of the frame leaving "now"
            self._long_term(
                ops.pool_map(old, c.temporal_size), ops.pool_map(old, c.abstract_size), prov
            )
        self.frames += 1

    def _long_term(self, temporal: torch.Tensor, abstract: torch.Tensor, prov: Prov) -> None:
        self.temporal.add(temporal, prov)
        self._update_abstract(abstract, prov)

    @property
    def spatial(self) -> tuple[torch.Tensor, ...]:
        return self.spatial_part.frames

    @property
    def spatial_prov(self) -> Prov:
        return self.spatial_part.prov

    def _update_abstract(self, e: torch.Tensor, prov: Prov) -> None:
        c = self.cfg
        if c.abstract_slots == 0:
            return
        if self.abstract.shape[0] < c.abstract_slots and self._distinct(e):  # a new seed
            self.abstract = torch.cat([self.abstract, e.unsqueeze(0)])  # (n+1, a, a, D)
            self.abstract_prov = self.abstract_prov.cat(prov)
            return
        self.chunk = torch.cat([self.chunk, e.unsqueeze(0)])  # (c+1, a, a, D)
        self.chunk_prov = self.chunk_prov.cat(prov)
        if self.chunk.shape[0] < c.chunk_frames:
            return
        m = self.abstract.reshape(-1, self.dim)  # (S*a*a, D)
        keys = self.chunk.reshape(-1, self.dim)  # (C*a*a, D): every token of the chunk
        q, k = self.qk if self.qk is not None else (None, None)
        new = ops.semantic_attention(m, keys, c.abstract_alpha, q, k)
        self.abstract = new.reshape(self.abstract.shape)  # (S, a, a, D)
        self.abstract_prov = self.abstract_prov.absorb(self.chunk_prov, c.abstract_alpha)
        self.chunk, self.chunk_prov = self._no_slots(), Prov.empty()

    def _distinct(self, e: torch.Tensor) -> bool:
        """True when map e (a, a, D) may seed a slot: its cosine to every slot is below
        abstract_seed_cosine (always at 1.0, the research code)."""
        limit = self.cfg.abstract_seed_cosine
        if limit >= 1.0 or self.abstract.shape[0] == 0:
            return True
        slots = self.abstract.reshape(self.abstract.shape[0], -1).float()  # (n, a*a*D)
        cos = torch.nn.functional.cosine_similarity(slots, e.reshape(1, -1).float(), dim=1)
        return bool(cos.max() < limit)

    def snapshot(self) -> Snapshot:
        c = self.cfg
        buffer = self.buffer.view(c.buffer_frames)
        temporal = self.temporal.view('temporal', c.temporal_clusters)
        abstract = tuple(self.abstract.unbind(0))
        parts = (
            PartView(
                'abstract', c.abstract_size, c.abstract_slots, abstract, self.abstract_prov, False
            ),
            temporal,
            KeyFrames('retrieved', c.retrieved_frames, c.retrieval, False, temporal, buffer),
            self.spatial_part.view('spatial'),
            *((self.recent.view('recent'),) if c.recent_frames else ()),
            *self._timeline_parts(),
            PartView(
                'abstract_chunk',
                c.abstract_size,
                c.chunk_frames - 1,  # the most it holds between two updates
                tuple(self.chunk.unbind(0)),
                self.chunk_prov,
                False,
                role='hidden',
            ),
        )
        return self._snapshot(parts, buffer)

    def config_dict(self) -> dict[str, Any]:
        return self._with_timeline(to_dict(self.cfg))

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        c = self.cfg
        check_meta(meta, self.kind, self.config_dict(), self.dim)
        common = self._check_common(tensors, meta)
        n_cams = len(common[0])
        sizes = {
            'abstract': (c.abstract_size, c.abstract_slots),
            'temporal': (c.temporal_size, c.temporal_clusters),
            'spatial': (c.spatial_size, c.spatial_frames),
            'abstract_chunk': (c.abstract_size, c.chunk_frames - 1),
        }
        if c.recent_frames:
            sizes['recent'] = (c.recent_size, c.recent_frames)
        loaded = {
            n: part_from_state(tensors, n, s, self.dim, k, n_cams) for n, (s, k) in sizes.items()
        }
        dist = dist_from_state(tensors, 'temporal', loaded['temporal'][0].shape[0])
        buf_cap = c.buffer_frames if c.buffer_capped else None
        buffer = part_from_state(tensors, 'buffer', c.retrieved_size, self.dim, buf_cap, n_cams)
        timeline = self._timeline_from_state(tensors, n_cams)
        self.reset()
        self._load_common(common)
        maps, prov = loaded['abstract']
        self.abstract, self.abstract_prov = maps.to(self.device, self.dtype), prov
        maps, prov = loaded['abstract_chunk']
        self.chunk, self.chunk_prov = maps.to(self.device, self.dtype), prov
        self.temporal.load(*loaded['temporal'], dist)
        self.spatial_part.load(*loaded['spatial'], self.device, self.dtype)
        if 'recent' in loaded:
            self.recent.load(*loaded['recent'], self.device, self.dtype)
        self._load_buffer(*buffer)
        self._load_timeline(timeline)
        log.debug('loaded STAR memory state: %d frames', self.frames)
