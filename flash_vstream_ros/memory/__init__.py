"""Streaming visual memories (pure torch): STAR (Flash-VStream v1) and synopsis (v2).

Deliberate choices (config options; the released research code in brackets):
* temporal/synopsis clustering: weighted, exact - once full, each frame costs one Ward merge of
  the cheapest pair (no iterations, no randomness) [unweighted Lloyd from a random start:
  kmeans_weighted=False, kmeans_init='random'];
* key-frame retrieval: the buffered frame nearest to each of the largest centroids
  [frames indexed by cluster id, i.e. early frames: retrieval='released'];
* feature buffer capped at buffer_frames [unbounded: buffer_capped=False];
* abstract q/k: the model's trained projections when it has them, else the identity (a plain
  scaled dot product on the features). With 1x1 slots a frame gives one key, the softmax is 1
  and the abstract update reduces to an exponential moving average, with or without q/k.
* abstract updates once per chunk of frames with the chunk's tokens as keys (the research
  code's evaluation path), and the long-term parts leave the recent frames out;
* time windows: a timeline of contiguous segments (timeline.py) answers window questions
  with what lies in the window (windowed.py); whole-history clusters and slots never stand
  in for a window. With ``memory.timeline.segments=0`` (the paper's memory) a window selects
  elements by their weight-averaged stamp, which fails once scenes recur.
  Camera filter: an element is used when it holds content from one of the cameras (a
  shared-memory cluster may mix cameras).
* stamps are integer nanoseconds (flash_vstream_ros.stamps).
Layout: ops (pure tensor functions), prov (time/camera provenance), store (writer-side
clusters and frame buffer), timeline, star, synopsis, snapshot (immutable views and the saved
state), windowed (window readouts).
"""

from __future__ import annotations

import torch
from torch import nn

from flash_vstream_ros.config import MemoryConfig
from flash_vstream_ros.memory.base import StreamMemory
from flash_vstream_ros.memory.snapshot import Snapshot
from flash_vstream_ros.memory.star import StarMemory
from flash_vstream_ros.memory.synopsis import SynopsisMemory

__all__ = ['Snapshot', 'StarMemory', 'SynopsisMemory', 'build_memory']


def build_memory(
    cfg: MemoryConfig,
    dim: int,
    qk: tuple[nn.Module, nn.Module] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> StreamMemory:
    """The memory ``cfg.kind`` names, for feature width ``dim``, on ``device`` in ``dtype``.

    ``qk``: the model's trained abstract-memory projections (STAR only; see StarConfig).
    """
    if cfg.kind == 'synopsis':
        return SynopsisMemory(cfg.synopsis, dim, device=device, dtype=dtype, timeline=cfg.timeline)
    return StarMemory(cfg.star, dim, qk=qk, device=device, dtype=dtype, timeline=cfg.timeline)
