"""Combining memory readouts for one question: token budgets and concatenation across cameras."""

from __future__ import annotations

from collections.abc import Sequence
import math

import torch

from flash_vstream_ros.memory.base import Evidence, Readout
from flash_vstream_ros.models.base import TokenGroup


def fit_readout(readout: Readout, budget: int) -> Readout:
    """The readout cut to at most ``budget`` tokens.

    Whole elements are dropped, part by part in proportion, keeping the heaviest elements
    (those standing for most frames) in their original order; tokens left over by rounding go
    back to the parts read last (spatial, retrieved: the newest and sharpest frames). A part
    whose tokens do not split evenly over its evidence is thinned by a uniform token stride
    instead (its evidence kept).
    """
    total = int(readout.tokens.shape[0])
    if total <= budget:
        return readout
    if budget <= 0:
        return Readout(readout.tokens[:0], (), ())
    blocks = _blocks(readout)
    keep = _plan(blocks, budget / total, budget)
    chunks: list[torch.Tensor] = []
    parts: list[tuple[str, int]] = []
    evidence: list[Evidence] = []
    for (name, block, elems, per), k in zip(blocks, keep, strict=True):
        kept_tokens, kept_elems = _shrink_part(block, elems, per, k)
        chunks.append(kept_tokens)
        parts.append((name, int(kept_tokens.shape[0])))
        evidence.extend(kept_elems)
    tokens = torch.cat(chunks) if chunks else readout.tokens[:0]  # (N', D)
    if tokens.shape[0] > budget:
        tokens = tokens[:budget]
        parts = _cap_parts(parts, budget)
    return Readout(tokens, tuple(parts), tuple(evidence))


_Block = tuple[str, torch.Tensor, list[Evidence], int]  # name, (n, D) tokens, elements, per


def _blocks(readout: Readout) -> list[_Block]:
    """Per part: its tokens, its evidence and tokens per element (0 = not splittable)."""
    out: list[_Block] = []
    offset = 0
    for name, count in readout.parts:
        block = readout.tokens[offset : offset + count]  # (count, D)
        offset += count
        elems = [e for e in readout.evidence if e.part == name]
        per = count // len(elems) if elems and count % len(elems) == 0 else 0
        out.append((name, block, elems, per))
    return out


def _plan(blocks: list[_Block], scale: float, budget: int) -> list[int]:
    """Tokens kept per part: proportional, then leftovers to the last parts, whole elements."""
    keep = []
    for _, block, _, per in blocks:
        k = math.floor(block.shape[0] * scale)
        keep.append(k - k % per if per else k)
    left = budget - sum(keep)
    for i in reversed(range(len(blocks))):
        _, block, _, per = blocks[i]
        step = per or 1
        while left >= step and keep[i] + step <= block.shape[0]:
            keep[i] += step
            left -= step
    return keep


def _shrink_part(
    block: torch.Tensor, elems: list[Evidence], per: int, keep_tokens: int
) -> tuple[torch.Tensor, list[Evidence]]:
    count = int(block.shape[0])
    if keep_tokens >= count:
        return block, elems
    if per:
        keep = keep_tokens // per
        order = sorted(range(len(elems)), key=lambda i: -elems[i].weight)[:keep]
        chosen = sorted(order)
        rows = [block[i * per : (i + 1) * per] for i in chosen]  # each (per, D)
        kept = torch.cat(rows) if rows else block[:0]
        return kept, [elems[i] for i in chosen]
    if keep_tokens <= 0:
        return block[:0], []
    index = torch.linspace(0, count - 1, keep_tokens).round().long()
    return block[index], elems


def _cap_parts(parts: list[tuple[str, int]], budget: int) -> list[tuple[str, int]]:
    capped: list[tuple[str, int]] = []
    left = budget
    for name, count in parts:
        take = min(count, left)
        capped.append((name, take))
        left -= take
    return capped


def concat_readouts(named: Sequence[tuple[str, Readout]]) -> Readout:
    """Readouts of several cameras in the given (fixed) order; part names get 'camera:'."""
    nonempty = [(cam, r) for cam, r in named if r.tokens.shape[0] > 0]
    if not nonempty:
        first = named[0][1] if named else None
        empty = first.tokens[:0] if first is not None else torch.zeros(0, 0)
        return Readout(empty, (), ())
    if len(nonempty) == 1:
        return nonempty[0][1]
    tokens = torch.cat([r.tokens for _, r in nonempty])  # (sum N_c, D)
    parts = tuple((f'{cam}:{name}', n) for cam, r in nonempty for name, n in r.parts)
    evidence = tuple(e for _, r in nonempty for e in r.evidence)
    return Readout(tokens, parts, evidence)


def token_layout(readout: Readout) -> tuple[TokenGroup, ...]:
    """The readout's tokens element by element: (part, tokens, stamp) in readout order.

    Each part's tokens split over its evidence in order (evenly; a part thinned by a token
    stride gives its first elements one token more); a part without evidence is one group
    stamped at the readout's start. Sums to the readout's token count.
    """
    groups: list[TokenGroup] = []
    cursor = 0
    fallback = readout.span[0] if readout.span else 0
    for name, count in readout.parts:
        base = name.rsplit(':', 1)[-1]
        elems = []
        while cursor < len(readout.evidence) and readout.evidence[cursor].part == base:
            elems.append(readout.evidence[cursor])
            cursor += 1
        if not elems:
            if count:
                groups.append(TokenGroup(name, count, fallback))
            continue
        per, extra = divmod(count, len(elems))
        for i, e in enumerate(elems):
            n = per + (1 if i < extra else 0)
            if n:
                groups.append(TokenGroup(name, n, e.stamp))
    return tuple(groups)
