"""Streaming visual memories (pure torch): STAR (Flash-VStream v1) and synopsis (v2)."""

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
        return SynopsisMemory(cfg.synopsis, dim, device=device, dtype=dtype)
    return StarMemory(cfg.star, dim, qk=qk, device=device, dtype=dtype)
