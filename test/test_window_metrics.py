"""benchmarks/window_metrics.py on tiny hand-made inputs (numpy only, hand-computed values)."""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
import pytest

from benchmarks.window_metrics import (
    adaptive_pool,
    inside_share,
    max_pairwise_cosine,
    random_windows,
    recall_distance,
)

pytestmark = pytest.mark.unit

S = 1_000_000_000  # 1 s in ns
STAMPS = np.arange(10, dtype=np.int64) * S  # frames at 0, 1, ..., 9 s


@dataclass
class Ev:
    part: str
    start_ns: int
    end_ns: int
    weight: float
    stamp_ns: int
    camera: str = ''


def test_single_frames_count_in_or_out() -> None:
    ev = [Ev('spatial', 2 * S, 2 * S, 1, 2 * S), Ev('detail', 8 * S, 8 * S, 1, 8 * S)]
    r = inside_share(ev, (1 * S, 3 * S), STAMPS)
    assert r.per_item == (1.0, 0.0)
    assert r.share == pytest.approx(0.5)
    assert r.weight == 2.0
    assert r.per_part == {'spatial': 1.0, 'detail': 0.0}


def test_timeline_segment_is_exact() -> None:
    # Segment 2..7 s = 6 frames; window [4, 9] s holds 4, 5, 6, 7: share 4/6.
    ev = [Ev('timeline', 2 * S, 7 * S, 6, 4 * S + S // 2)]
    r = inside_share(ev, (4 * S, 9 * S), STAMPS)
    assert r.share == pytest.approx(4 / 6)
    # Window edges are inclusive: [7, 7] holds frame 7 only.
    assert inside_share(ev, (7 * S, 7 * S), STAMPS).share == pytest.approx(1 / 6)


def test_cluster_upper_bound_favours_scattered_clusters() -> None:
    # A 3-frame cluster spanning 0..9 s; window [4, 5] s holds 2 ingested frames: bound 2/3
    # (the true share could be 0 if its members were 0, 1 and 9).
    ev = [Ev('abstract', 0, 9 * S, 3, 4 * S)]
    assert inside_share(ev, (4 * S, 5 * S), STAMPS).share == pytest.approx(2 / 3)
    # A window holding more frames than the weight caps at 1.
    assert inside_share(ev, (0, 9 * S), STAMPS).share == pytest.approx(1.0)
    # No overlap: 0.
    assert inside_share([Ev('abstract', 0, 2 * S, 3, S)], (5 * S, 6 * S), STAMPS).share == 0.0


def test_weight_average_over_parts() -> None:
    ev = [
        Ev('timeline', 0, 3 * S, 4, S),  # frames 0-3, window [2, 5]: 2/4 inside, weight 4
        Ev('abstract', 6 * S, 9 * S, 2, 7 * S),  # overlap [6, 5] empty: 0, weight 2
        Ev('spatial', 5 * S, 5 * S, 1, 5 * S),  # inside: 1, weight 1
    ]
    r = inside_share(ev, (2 * S, 5 * S), STAMPS)
    assert r.share == pytest.approx((4 * 0.5 + 2 * 0 + 1 * 1) / 7)
    assert r.per_part == pytest.approx({'timeline': 0.5, 'abstract': 0.0, 'spatial': 1.0})
    assert r.per_part_weight == {'timeline': 4.0, 'abstract': 2.0, 'spatial': 1.0}


def test_mappings_cameras_and_empty() -> None:
    # Two cameras interleaved: a at even seconds, b at odd ones.
    cams = ['a' if s % 2 == 0 else 'b' for s in range(10)]
    seg = {'part': 'timeline', 'start_ns': 0, 'end_ns': 5 * S, 'weight': 3, 'stamp_ns': 2 * S,
           'camera': 'a'}  # fmt: skip
    # Camera a's frames in [0, 5]: 0, 2, 4 -> window [3, 9] holds 4 only: 1/3.
    assert inside_share([seg], (3 * S, 9 * S), STAMPS, cams).share == pytest.approx(1 / 3)
    # Ignoring cameras: frames 0..5 -> window holds 3, 4, 5: 3/6.
    assert inside_share([seg], (3 * S, 9 * S), STAMPS).share == pytest.approx(0.5)
    # A shared cluster of a and b counts both cameras' frames.
    clu = Ev('abstract', 0, 9 * S, 4, 5 * S, camera='a,b')
    assert inside_share([clu], (8 * S, 9 * S), STAMPS, cams).share == pytest.approx(2 / 4)
    empty = inside_share([], (0, S), STAMPS)
    assert math.isnan(empty.share)
    assert empty.weight == 0.0


def test_random_windows_lie_in_span_and_repeat() -> None:
    stamps = 1_000 * S + np.arange(600, dtype=np.int64) * (S // 5)  # 119.8 s
    w = random_windows(stamps, lengths_s=(10, 60), n=20, seed=3)
    assert set(w) == {10, 60}
    for length, arr in w.items():
        assert arr.shape == (20, 2)
        assert arr.dtype == np.int64
        assert np.all(arr[:, 1] - arr[:, 0] == length * S)
        assert arr[:, 0].min() >= stamps[0]
        assert arr[:, 1].max() <= stamps[-1]
    again = random_windows(stamps, lengths_s=(10, 60), n=20, seed=3)
    assert all(np.array_equal(w[k], again[k]) for k in w)
    with pytest.raises(ValueError, match='longer'):
        random_windows(stamps, lengths_s=(200,))


def test_adaptive_pool() -> None:
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    assert adaptive_pool(x, 1)[0].tolist() == [7.5]
    # 2x2 bins of a 4x4 map: means of [[0,1],[4,5]], [[2,3],[6,7]], ...
    assert adaptive_pool(x, 2)[0].tolist() == [2.5, 4.5, 10.5, 12.5]
    # A 2x2 map on a 4x4 grid is repeated: same mean.
    small = np.array([[[[1.0], [2.0]], [[3.0], [4.0]]]], np.float32)
    assert adaptive_pool(small, 4).mean() == pytest.approx(2.5)
    # 7 rows into 4 bins: rows [0,2), [1,4), [3,6), [5,7) (torch's adaptive pooling); the
    # single column is repeated 4 times, so the bins' rows are every 4th output.
    col = np.arange(7, dtype=np.float32).reshape(1, 7, 1, 1)
    assert adaptive_pool(col, 4)[0, ::4].tolist() == pytest.approx([0.5, 2.0, 4.0, 5.5])


def test_recall_distance() -> None:
    # 1-D features; memory holds 0 and 10. Frames: clip 0 (early) at 3 and 9 -> distances 3, 1;
    # clip 1 at 1, 2, 10 -> distances 1, 2, 0. Medians: early 2, other 1: ratio 2.
    frames = np.array([[3.0], [9.0], [1.0], [2.0], [10.0]])
    elems = np.array([[0.0], [10.0]])
    r = recall_distance(elems, frames, [0, 0, 1, 1, 1], only_early_clip=0)
    assert r.distances.tolist() == pytest.approx([3, 1, 1, 2, 0])
    assert (r.median_early, r.median_other, r.ratio) == pytest.approx((2.0, 1.0, 2.0))


def test_recall_distance_pools_maps() -> None:
    # 2x2x1 maps: pooled 1x1 = the mean; a 2x2 grid keeps all four cells.
    f = np.array([[[[0.0], [4.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[1.0], [1.0]]]])
    e = np.zeros((1, 2, 2, 1))
    r1 = recall_distance(e, f, [0, 1], only_early_clip=0, grid=1)
    assert r1.distances.tolist() == pytest.approx([1.0, 1.0])  # means 1 and 1
    r2 = recall_distance(e, f, [0, 1], only_early_clip=0, grid=2)
    assert r2.distances.tolist() == pytest.approx([4.0, 2.0])  # |(0,4,0,0)|, |(1,1,1,1)|
    assert r2.ratio == pytest.approx(2.0)
    # Elements as a list of maps of different sizes (1x1 and 2x2), pooled to 1x1.
    r3 = recall_distance([np.full((1, 1, 1), 1.0), np.zeros((2, 2, 1))], f, [0, 1], 0)
    assert r3.distances.tolist() == pytest.approx([0.0, 0.0])
    # normalize: unit vectors.
    r4 = recall_distance(np.array([[1.0, 0.0]]), np.array([[0.0, 5.0], [3.0, 0.0]]), [0, 1], 0,
                         normalize=True)  # fmt: skip
    assert r4.distances.tolist() == pytest.approx([math.sqrt(2), 0.0])
    assert r4.ratio == math.inf


def test_max_pairwise_cosine() -> None:
    v = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    # cos(r0, r2) = 3/5, cos(r1, r2) = 4/5, cos(r0, r1) = 0.
    assert max_pairwise_cosine(v) == pytest.approx(0.8)
    # A row's cosine with itself (1) is never counted; duplicates are.
    assert max_pairwise_cosine(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.0)
    assert max_pairwise_cosine(np.array([[1.0, 1.0], [2.0, 2.0]])) == pytest.approx(1.0)
    # Maps are flattened; a zero row has cosine 0.
    assert max_pairwise_cosine(np.array([[[0.0]], [[-1.0]]])) == pytest.approx(0.0)
    assert math.isnan(max_pairwise_cosine(np.ones((1, 3))))
