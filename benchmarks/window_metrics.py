"""Figures for window questions ("what happened between t0 and t1?") and long-term recall.

Pure numpy: no torch and no flash_vstream_ros import. An evidence item is anything with the
attributes (or mapping keys) ``part``, ``start_ns``, ``end_ns``, ``weight``, ``stamp_ns`` and,
optionally, ``camera`` (','-joined names for a shared element): what a memory readout reports
for each element it used. The ground truth is every ingested frame's ``stamp_ns`` (and camera).
Windows are closed intervals ``[w0, w1]`` of integer nanoseconds.

- :func:`inside_share`: the weight-averaged share of the evidence's member frames inside the
  window (overall and per part): 1.0 means everything the readout showed is from the window.
- :func:`random_windows`: windows of fixed lengths placed uniformly in the stream's span.
- :func:`recall_distance`: per frame, the distance to the nearest memory element, median for the
  early-only clip vs the other clips (does the memory still hold what it saw only once, long ago?).
- :func:`max_pairwise_cosine`: the largest cosine between two distinct rows (memory diversity).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TIMELINE = 'timeline'


def _get(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


@dataclass(frozen=True)
class InsideShare:
    """Weight-averaged share of evidence frames inside the window (nan when no evidence)."""

    share: float
    weight: float  # total evidence weight
    per_part: dict[str, float] = field(default_factory=dict)
    per_part_weight: dict[str, float] = field(default_factory=dict)
    per_item: tuple[float, ...] = ()  # each item's share, in evidence order


def _count_in(sorted_stamps: np.ndarray, lo: int, hi: int) -> int:
    """How many stamps s with lo <= s <= hi (0 when lo > hi)."""
    if lo > hi:
        return 0
    return int(
        np.searchsorted(sorted_stamps, hi, side='right')
        - np.searchsorted(sorted_stamps, lo, side='left')
    )


def item_share(
    item: Any, window: tuple[int, int], stamps_by_camera: Mapping[str | None, np.ndarray]
) -> float:
    """One evidence item's share of member frames inside ``window`` (see :func:`inside_share`)."""
    w0, w1 = int(window[0]), int(window[1])
    part = _get(item, 'part')
    weight = float(_get(item, 'weight'))
    start, end = int(_get(item, 'start_ns')), int(_get(item, 'end_ns'))
    camera = _get(item, 'camera')
    if None in stamps_by_camera:  # cameras not given: every ingested frame counts
        stamps = stamps_by_camera[None]
    else:  # the item's cameras ('a,b'); an item without a camera counts every camera
        names = str(camera).split(',') if camera else list(stamps_by_camera)
        parts = [stamps_by_camera[c] for c in names if c in stamps_by_camera]
        stamps = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
    if abs(weight - 1.0) < 1e-9:  # a single frame: the frame itself
        stamp = int(_get(item, 'stamp_ns'))
        return 1.0 if w0 <= stamp <= w1 else 0.0
    if part == TIMELINE:  # a contiguous segment: exactly the ingested frames it spans
        members = _count_in(stamps, start, end)
        if members == 0:
            stamp = int(_get(item, 'stamp_ns'))
            return 1.0 if w0 <= stamp <= w1 else 0.0
        return _count_in(stamps, max(start, w0), min(end, w1)) / members
    # A cluster: its members are somewhere in [start, end]; at most all frames of the overlap.
    if weight <= 0:
        return 0.0
    return min(weight, _count_in(stamps, max(start, w0), min(end, w1))) / weight


def inside_share(
    evidence: Iterable[Any],
    window: tuple[int, int],
    ingested_stamps: np.ndarray | Sequence[int],
    ingested_cameras: Sequence[str] | np.ndarray | None = None,
) -> InsideShare:
    """Weight-averaged share of the evidence's member frames that lie inside ``window``.

    Members of an evidence item are estimated as follows:

    - a single frame (``weight == 1``): the frame itself (its ``stamp_ns``);
    - a contiguous segment (``part == 'timeline'``): all ingested frames with
      ``start_ns <= stamp <= end_ns`` (exact for contiguous runs); its share is the fraction of
      those inside the window;
    - a cluster or slot of any other part (weight > 1, members possibly scattered over
      ``[start_ns, end_ns]``): an UPPER BOUND, ``min(weight, n) / weight`` with ``n`` the number
      of ingested frames in ``[max(start, w0), min(end, w1)]``: as if every frame of the overlap
      were a member. This FAVOURS non-contiguous clusters (a cluster whose span merely crosses
      the window scores as if it were made of the window's frames), so a timeline that beats
      clusters on this figure beats them on the true share too.

    With ``ingested_cameras`` (one name per stamp) an item counts only frames of its cameras
    (``camera`` split on ','); without, all ingested frames count. Items are averaged with their
    ``weight``; ``per_part`` gives the same average within each part. No evidence: nan.
    """
    stamps = np.asarray(ingested_stamps, dtype=np.int64)
    if ingested_cameras is None:
        by_camera: dict[str | None, np.ndarray] = {None: np.sort(stamps)}
    else:
        cams = np.asarray(ingested_cameras)
        if cams.shape[0] != stamps.shape[0]:
            raise ValueError('ingested_cameras needs one camera per ingested stamp')
        by_camera = {str(c): np.sort(stamps[cams == c]) for c in np.unique(cams)}
    shares: list[float] = []
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for item in evidence:
        s = item_share(item, window, by_camera)
        w = float(_get(item, 'weight'))
        part = str(_get(item, 'part'))
        shares.append(s)
        sums[part] = sums.get(part, 0.0) + w * s
        weights[part] = weights.get(part, 0.0) + w
    total_w = sum(weights.values())
    total = sum(sums.values()) / total_w if total_w > 0 else float('nan')
    per_part = {p: (sums[p] / weights[p] if weights[p] > 0 else float('nan')) for p in sums}
    return InsideShare(total, total_w, per_part, weights, tuple(shares))


def random_windows(
    stamps_ns: np.ndarray | Sequence[int],
    lengths_s: Sequence[float] = (10, 30, 60),
    n: int = 50,
    seed: int = 0,
) -> dict[float, np.ndarray]:
    """``n`` windows per length, start uniform so the window lies within the stream's span.

    Returns ``{length_s: (n, 2) int64 [[w0, w1], ...]}`` with ``w1 - w0 == length`` in ns and
    ``min(stamps) <= w0``, ``w1 <= max(stamps)``. A length longer than the span raises.
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    lo, hi = int(stamps.min()), int(stamps.max())
    rng = np.random.default_rng(seed)
    out: dict[float, np.ndarray] = {}
    for length in lengths_s:
        length_ns = round(float(length) * 1e9)
        if length_ns > hi - lo:
            raise ValueError(f'window {length} s is longer than the stream ({(hi - lo) / 1e9} s)')
        w0 = rng.integers(lo, hi - length_ns, size=n, endpoint=True, dtype=np.int64)
        out[length] = np.stack([w0, w0 + length_ns], axis=1)
    return out


def adaptive_pool(maps: np.ndarray, grid: int) -> np.ndarray:
    """(N, H, W, D) -> (N, grid*grid*D): torch-style adaptive average pooling, flattened.

    Bin i spans rows ``floor(i*H/g)`` to ``ceil((i+1)*H/g)``, so a map smaller than the grid is
    repeated (a 2x2 map on a 4x4 grid keeps its mean). (N, D) input is returned as float32.
    """
    x = np.asarray(maps, dtype=np.float32)
    if x.ndim == 2:
        return x
    if x.ndim != 4:
        raise ValueError(f'expected (N, D) or (N, H, W, D), got {x.shape}')
    n, h, w, d = x.shape
    out = np.empty((n, grid, grid, d), np.float32)
    for i in range(grid):
        r0, r1 = (i * h) // grid, -((-(i + 1) * h) // grid)
        for j in range(grid):
            c0, c1 = (j * w) // grid, -((-(j + 1) * w) // grid)
            out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return out.reshape(n, grid * grid * d)


def _as_vectors(x: np.ndarray | Sequence[np.ndarray], grid: int, chunk: int = 256) -> np.ndarray:
    """Vectors from (N, D), (N, H, W, D), or a list of (H, W, D) / (D,) arrays of mixed sizes."""
    if isinstance(x, np.ndarray):
        if x.ndim == 4:  # pooled in chunks: x may be a float16 memmap of the whole stream
            out = np.empty((len(x), grid * grid * x.shape[-1]), np.float32)
            for a in range(0, len(x), chunk):
                out[a : a + chunk] = adaptive_pool(x[a : a + chunk], grid)
            return out
        return np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    rows = [np.asarray(e, dtype=np.float32) for e in x]
    return np.stack([adaptive_pool(r[None], grid)[0] if r.ndim == 3 else r for r in rows])


@dataclass(frozen=True)
class RecallDistance:
    """Median nearest-memory-element distance: early-only clip vs the other clips."""

    median_early: float
    median_other: float
    ratio: float  # median_early / median_other; goal <= 1.5
    distances: np.ndarray  # (N,) per frame


def nearest_distances(frames: np.ndarray, elements: np.ndarray, chunk: int = 512) -> np.ndarray:
    """L2 distance from each row of ``frames`` to its nearest row of ``elements``."""
    e = elements.astype(np.float64)
    e2 = (e * e).sum(axis=1)
    out = np.empty(len(frames), np.float64)
    for a in range(0, len(frames), chunk):
        f = frames[a : a + chunk].astype(np.float64)
        d2 = (f * f).sum(axis=1)[:, None] - 2.0 * f @ e.T + e2[None, :]
        out[a : a + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def recall_distance(
    memory_element_vectors: np.ndarray | Sequence[np.ndarray],
    frame_vectors: np.ndarray,
    clip_ids: np.ndarray | Sequence[int],
    only_early_clip: int,
    grid: int = 1,
    normalize: bool = False,
) -> RecallDistance:
    """For each frame, the L2 distance to the nearest memory element; early clip vs the others.

    ``memory_element_vectors`` and ``frame_vectors`` are vectors (N, D) or feature maps
    (N, H, W, D) (elements may also be a list of maps of different sizes); maps are pooled to a
    ``grid`` x ``grid`` map (1: the mean-pooled feature; 4: a 4x4 pooling) and flattened, so
    frames and elements must share D. ``normalize`` divides every vector by its L2 norm first.
    ``only_early_clip`` is the clip id seen only early in the stream. ``ratio`` =
    median(early frames) / median(other frames): near 1 when the memory still represents the
    early clip as well as the recurring ones (goal <= 1.5).
    """
    frames = _as_vectors(frame_vectors, grid)
    elements = _as_vectors(memory_element_vectors, grid)
    if frames.shape[1] != elements.shape[1]:
        raise ValueError(f'frame dim {frames.shape[1]} != element dim {elements.shape[1]}')
    if normalize:
        frames = frames / np.maximum(np.linalg.norm(frames, axis=1, keepdims=True), 1e-12)
        elements = elements / np.maximum(np.linalg.norm(elements, axis=1, keepdims=True), 1e-12)
    ids = np.asarray(clip_ids)
    if ids.shape[0] != frames.shape[0]:
        raise ValueError('clip_ids needs one id per frame')
    dist = nearest_distances(frames, elements)
    early = ids == only_early_clip
    med_e = float(np.median(dist[early])) if early.any() else float('nan')
    med_o = float(np.median(dist[~early])) if (~early).any() else float('nan')
    if med_o > 0:
        ratio = med_e / med_o
    elif med_o == 0:  # the other clips' frames are all in memory exactly
        ratio = 1.0 if med_e == 0 else float('inf')
    else:  # nan: no frames of one side
        ratio = float('nan')
    return RecallDistance(med_e, med_o, ratio, dist)


def max_pairwise_cosine(vectors: np.ndarray) -> float:
    """The largest cosine similarity between two distinct rows (rows flattened); nan if < 2.

    A zero row has cosine 0 with everything.
    """
    x = np.asarray(vectors, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)
    if x.shape[0] < 2:
        return float('nan')
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    u[np.linalg.norm(x, axis=1) == 0] = 0.0
    cos = u @ u.T
    np.fill_diagonal(cos, -np.inf)
    return float(cos.max())
