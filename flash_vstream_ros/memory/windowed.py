"""Readout for a question about a time window: what lies in the window, nothing else.

Used when the memory keeps a timeline (memory/timeline.py). The readout is made of, in order:
* ``timeline``: the mean maps of the segments that lie inside the window (start and end in it);
  a segment is a run of consecutive frames, so all its member frames are in the window;
* ``frames`` and ``timeline_frames``: single frames stamped inside the window, from the feature
  buffer (the newest frames) and the segments' representative frames (all of history), spread
  evenly in time over what the token budget leaves (a short window gets every frame it has,
  a long one a sample);
* the recent part (STAR's ``spatial``, synopsis's ``recent``): its frames inside the window.
Whole-history elements (temporal clusters, abstract slots, synopsis clusters) are never read
for a window: their spans meet every window. Only when none of the above meets the window
(a window inside one long segment whose representative lies outside it, after the buffer
moved on) do the segments come in by their overlap: those with at least half of their span
inside, else the one with the largest share; their evidence shows their true span.
Budget: the tokens of a full open readout, so answers cost no more than open questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from flash_vstream_ros.memory.base import Evidence, Readout, TimeWindow

if TYPE_CHECKING:
    from flash_vstream_ros.memory.snapshot import PartView, Snapshot

RECENT_PARTS = ('spatial', 'recent')


@dataclass(frozen=True)
class _Pick:
    """Elements chosen from one part."""

    part: PartView
    idx: list[int]


def window_readout(snap: Snapshot, window: TimeWindow, mask: int | None) -> Readout:
    """Tokens (N, D) of what the memory holds inside ``window`` for cameras ``mask``."""
    budget = sum(cap for _, cap in snap.fill().values())
    recent = [p for p in snap.parts if p.name in RECENT_PARTS]
    picks = [_Pick(p, _inside(p, window, mask)) for p in recent]  # a frame's span: its stamp
    budget -= sum(len(k.idx) * k.part.tokens_per_element for k in picks)
    segments = snap.stored_part('timeline')
    seg_pick = _Pick(segments, _inside(segments, window, mask)) if segments else None
    if seg_pick is not None:
        seg_pick = _thin(seg_pick, max(budget, 0))
        budget -= len(seg_pick.idx) * segments.tokens_per_element  # type: ignore[union-attr]
    taken = {(int(c), int(s)) for k in picks for c, s in _keys(k)}
    frame_picks = _spread_frames(snap, window, mask, max(budget, 0), taken)
    chosen = [k for k in ([seg_pick] if seg_pick else []) + frame_picks + picks if k.idx]
    if not chosen and segments is not None:
        chosen = [_Pick(segments, _by_overlap(segments, window, mask))]
    return _assemble(snap, [k for k in chosen if k.idx])


def _camera_ok(part: PartView, mask: int | None) -> torch.Tensor:
    cams = part.prov.cams
    return torch.ones(len(cams), dtype=torch.bool) if mask is None else (cams & mask) != 0


def _inside(part: PartView, window: TimeWindow, mask: int | None) -> list[int]:
    """Elements whose whole span lies in the window, by start stamp."""
    p = part.prov
    keep = _camera_ok(part, mask)
    if window.start is not None:
        keep &= p.start >= window.start
    if window.end is not None:
        keep &= p.end <= window.end
    order = torch.argsort(p.start, stable=True)
    return [int(i) for i in order if keep[i]]


def _keys(pick: _Pick) -> list[tuple[int, int]]:
    p = pick.part.prov
    return [(int(p.cams[i]), int(p.start[i])) for i in pick.idx]


def _thin(pick: _Pick, tokens: int) -> _Pick:
    """At most ``tokens`` worth of the pick's elements, evenly spread over its (timed) order."""
    most = tokens // pick.part.tokens_per_element
    return _Pick(pick.part, _evenly(pick.idx, most))


def _evenly(items: list[int], most: int) -> list[int]:
    if most >= len(items):
        return items
    if most <= 0:
        return []
    pos = torch.linspace(0, len(items) - 1, most).round().long().unique().tolist()
    return [items[i] for i in pos]


def _spread_frames(
    snap: Snapshot, window: TimeWindow, mask: int | None, tokens: int, taken: set[tuple[int, int]]
) -> list[_Pick]:
    """Single frames in the window from the buffer and the segments' representatives."""
    sources = [snap.buffer.as_part().with_name('frames')]
    reps = snap.stored_part('timeline_frames')
    if reps is not None:
        sources.append(reps)
    pool: list[tuple[int, int, int]] = []  # (stamp, source, index), one per distinct frame
    for s, part in enumerate(sources):
        for i in _inside(part, window, mask):
            key = (int(part.prov.cams[i]), int(part.prov.start[i]))
            if key not in taken:
                taken.add(key)
                pool.append((key[1], s, i))
    pool.sort()
    per = max(p.tokens_per_element for p in sources)
    chosen = [pool[i] for i in _evenly(list(range(len(pool))), tokens // per)]
    return [_Pick(part, [i for _, s2, i in chosen if s2 == s]) for s, part in enumerate(sources)]


def _by_overlap(part: PartView, window: TimeWindow, mask: int | None) -> list[int]:
    """Segments with at least half their span in the window, else the one with most."""
    p = part.prov
    lo = p.start if window.start is None else p.start.clamp(min=window.start)
    hi = p.end if window.end is None else p.end.clamp(max=window.end)
    span = (p.end - p.start).to(torch.float64)
    share = torch.where(span > 0, (hi - lo).to(torch.float64) / span.clamp_min(1), 1.0)
    share = torch.where((hi >= lo) & _camera_ok(part, mask), share, -1.0)  # (N,)
    if len(share) == 0 or float(share.max()) < 0:
        return []
    half = [int(i) for i in torch.nonzero(share >= 0.5).flatten()]
    return half or [int(torch.argmax(share))]


def _assemble(snap: Snapshot, picks: list[_Pick]) -> Readout:
    chunks: list[torch.Tensor] = []
    parts: list[tuple[str, int]] = []
    evidence: list[Evidence] = []
    for pick in picks:
        idx = sorted(pick.idx, key=lambda i: int(pick.part.prov.start[i]))
        chunks.extend(pick.part.elements[i].reshape(-1, snap.dim) for i in idx)  # (s*s, D)
        parts.append((pick.part.name, len(idx) * pick.part.tokens_per_element))
        evidence.extend(snap.evidence(pick.part, idx))
    tokens = (
        torch.cat(chunks)
        if chunks
        else torch.zeros(0, snap.dim, dtype=snap.dtype, device=snap.device)
    )
    return Readout(tokens=tokens, parts=tuple(parts), evidence=tuple(evidence))
