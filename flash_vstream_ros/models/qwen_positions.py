"""M-RoPE positions (temporal, height, width) for a prompt of text, memory tokens, text.

Qwen2-VL rotates each token by three positions. Text tokens have t = h = w = their index; the
tokens of a video frame at temporal index t on a (gh, gw) grid get (base + t, base + row,
base + col), where ``base`` is the position after the text before; the text after starts at the
largest visual position + 1. Generated tokens continue from the last prompt position + 1.

Two layouts:

* ``mrope`` (plain Qwen2-VL / Qwen2.5-VL): every memory element is a frame of one video at its
  own time; tokens stay in readout order.
* ``am_rope`` (Flash-VStream v2, ``FlashMemory.calc_am_rope`` of the research code): detail
  (DAM) elements first at (base + t, row, col), then synopsis (CSM) elements at (base + D + t,
  row, col) with D the number of detail tokens; the text after starts where the research code's
  ``get_rope_index`` puts it: after the *sequential* layout (element i at t = i), which is what
  the released weights were trained with, even when the time positions reach past it.

Time: an element's temporal index is its stamp, relative to the oldest element in the prompt,
times ``per_second`` (Qwen2.5-VL: its config's ``tokens_per_second``, 2; Qwen2-VL and v2: one
index per temporal patch of 2 frames at v2's 1 fps sampling, 0.5), rounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math

import torch

LAYOUTS = ('mrope', 'am_rope')


@dataclass(frozen=True)
class Block:
    """One memory element in the prompt: its part, its token grid and its stamp (ns)."""

    part: str
    rows: int
    cols: int
    stamp: int

    @property
    def tokens(self) -> int:
        return self.rows * self.cols


def grid_of(tokens: int) -> tuple[int, int]:
    """A square grid when ``tokens`` is a square, else one row."""
    side = math.isqrt(tokens)
    return (side, side) if side * side == tokens else (1, tokens)


def time_index(blocks: Sequence[Block], per_second: float) -> list[int]:
    """Each block's temporal index: seconds after the oldest stamp times ``per_second``."""
    if not blocks:
        return []
    t0 = min(b.stamp for b in blocks)
    return [round((b.stamp - t0) / 1e9 * per_second) for b in blocks]


def _grid_positions(block: Block, t: int) -> torch.Tensor:
    """(3, rows*cols) positions of one element at temporal index t, row-major."""
    rows = torch.arange(block.rows).view(-1, 1).expand(-1, block.cols).flatten()
    cols = torch.arange(block.cols).view(1, -1).expand(block.rows, -1).flatten()
    return torch.stack([torch.full_like(rows, t), rows, cols])


def _visual(blocks: Sequence[Block], times: Sequence[int], offsets: Sequence[int]) -> torch.Tensor:
    parts = [_grid_positions(b, t) + off for b, t, off in zip(blocks, times, offsets, strict=True)]
    return torch.cat(parts, 1) if parts else torch.zeros(3, 0, dtype=torch.long)


def is_detail(part: str) -> bool:
    """True for a detail (DAM) part, also with a 'camera:' prefix."""
    return part.rsplit(':', 1)[-1] == 'detail'


def v2_order(blocks: Sequence[Block]) -> list[int]:
    """Indices of ``blocks`` in v2's order: detail elements first, then the rest, each stable."""
    first = [i for i, b in enumerate(blocks) if is_detail(b.part)]
    return first + [i for i, b in enumerate(blocks) if not is_detail(b.part)]


def visual_positions(
    blocks: Sequence[Block], per_second: float, layout: str
) -> tuple[torch.Tensor, int]:
    """(3, N) positions of the memory tokens from 0, and where the text after starts.

    ``blocks`` are in prompt order (for ``am_rope``: already in :func:`v2_order`).
    """
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    times = time_index(blocks, per_second)
    if layout == 'mrope':
        pos = _visual(blocks, times, [0] * len(blocks))
        return pos, (int(pos.max()) + 1 if pos.numel() else 0)
    detail = sum(b.tokens for b in blocks if is_detail(b.part))
    offsets = [0 if is_detail(b.part) else detail for b in blocks]
    pos = _visual(blocks, times, offsets)
    seq_times, k_detail, k_rest = [], 0, 0
    for b in blocks:  # the research code's sequential layout: element i of its part at t = i
        seq_times.append(k_detail if is_detail(b.part) else k_rest)
        k_detail, k_rest = (k_detail + 1, k_rest) if is_detail(b.part) else (k_detail, k_rest + 1)
    seq = _visual(blocks, seq_times, offsets)
    return pos, (int(seq.max()) + 1 if seq.numel() else 0)


def prompt_positions(
    n_before: int, blocks: Sequence[Block], n_after: int, per_second: float, layout: str
) -> torch.Tensor:
    """(3, n_before + N + n_after) int64 positions of the whole prompt."""
    before = torch.arange(n_before).view(1, -1).expand(3, -1)
    visual, after_start = visual_positions(blocks, per_second, layout)
    after = torch.arange(n_after).view(1, -1).expand(3, -1) + n_before + after_start
    return torch.cat([before, visual + n_before, after], 1).long()
