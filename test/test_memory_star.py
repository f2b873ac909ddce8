"""STAR memory: hand-checked update rules, readout, filters and variants (small sizes)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from flash_vstream_ros.config import MemoryConfig, StarConfig
from flash_vstream_ros.errors import BadFrameError, ConfigError
from flash_vstream_ros.memory import StarMemory, build_memory, ops
from flash_vstream_ros.memory.base import TimeWindow
from flash_vstream_ros.memory.prov import Prov
from flash_vstream_ros.memory.store import ClusterSet

pytestmark = pytest.mark.unit

D = 4
SMALL = StarConfig(
    spatial_frames=2, spatial_size=2, temporal_clusters=3, temporal_size=2, abstract_slots=2,
    abstract_size=1, retrieved_frames=2, retrieved_size=2, buffer_frames=5,
    abstract_chunk=1, long_term_after_recent=False, abstract_seed_cosine=1.0,
)  # fmt: skip  # per-frame mechanics, checked by hand here; chunks: test_memory_time.py


def frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, 4, D, generator=torch.Generator().manual_seed(seed))  # (N, 4, 4, D)


def feed(mem: StarMemory, x: torch.Tensor, cameras: tuple[str, ...] = ('cam',)) -> None:
    for i in range(x.shape[0]):
        mem.update(x[i], i, cameras[i % len(cameras)])  # stamp: i ns


def small(**changes: Any) -> StarMemory:
    return StarMemory(dataclasses.replace(SMALL, **changes), D)


def test_paper_defaults_budget() -> None:
    mem = build_memory(MemoryConfig(), 1024)
    assert isinstance(mem, StarMemory)
    fill = mem.snapshot().fill()
    assert list(fill) == ['abstract', 'temporal', 'retrieved', 'spatial']
    assert {k: v[1] for k, v in fill.items()} == {
        'abstract': 25, 'temporal': 400, 'retrieved': 192, 'spatial': 64}  # fmt: skip
    assert sum(v[1] for v in fill.values()) == 681


def test_first_frames_are_stored_without_clustering() -> None:
    mem, x = small(), frames(3)
    feed(mem, x)
    for i in range(3):
        assert torch.equal(mem.temporal.elements[i], ops.pool_map(x[i], 2))
    assert mem.temporal.prov.weight.tolist() == [1.0, 1.0, 1.0]
    # abstract: the first 2 frames fill the 2 slots as they come; every slot absorbs the third
    first = torch.stack([ops.pool_map(x[i], 1) for i in range(2)])  # (2, 1, 1, D)
    torch.testing.assert_close(mem.abstract, 0.8 * first + 0.2 * ops.pool_map(x[2], 1))
    assert mem.abstract_prov.start.tolist() == [0.0, 1.0]
    assert mem.abstract_prov.end.tolist() == [2.0, 2.0]
    two = small()
    feed(two, x[:2])
    assert torch.equal(two.abstract, first)


def test_full_temporal_memory_merges_the_cheapest_pair() -> None:
    mem, x = small(), frames(4, seed=1)
    feed(mem, x[:3])
    points = torch.stack([ops.pool_map(f, 2).reshape(-1) for f in x])  # (4, 16)
    i, j = ops.best_merge(points, torch.ones(4))
    mem.update(x[3], 3, 'cam')
    expected = (points[i] + points[j]) / 2
    torch.testing.assert_close(mem.temporal.elements[i].reshape(-1), expected)
    assert mem.temporal.prov.weight[i].item() == 2.0
    assert mem.temporal.prov.weight.sum().item() == 4.0
    if j < 3:  # the new frame took the freed slot
        assert torch.equal(mem.temporal.elements[j].reshape(-1), points[3])


def test_hand_case_weighted_vs_unweighted() -> None:
    """Clusters 0 (10 frames) and 1.0 (1 frame); the frame 2.2 arrives (1-D maps, K=2).

    Weighted (paper): cost(0, 1.0) = 10/11 * 1 = 0.91 > cost(1.0, 2.2) = 1/2 * 1.44 = 0.72,
    so 1.0 and 2.2 merge into 1.6. Unweighted (released code, Lloyd from farthest points 0 and
    2.2): 1.0 is nearer 0, so the clusters become 0.5 and 2.2.
    """

    def run(weighted: bool) -> list[float]:
        store = ClusterSet(2, 1, 1, weighted=weighted, init='deterministic', iters=10, tol=1e-4,
                           generator=torch.Generator(), device=torch.device('cpu'),
                           dtype=torch.float32)  # fmt: skip
        prov = Prov.frame(0, 1).cat(Prov.frame(1, 1))
        prov = dataclasses.replace(prov, weight=torch.tensor([10.0, 1.0], dtype=torch.float64))
        store.load(
            torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1),
            prov,
            torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
        )
        store.add(torch.full((1, 1, 1), 2.2), Prov.frame(2, 1))
        assert store.prov.weight.sum().item() == 12.0
        return [e.item() for e in store.elements]

    assert run(True) == pytest.approx([0.0, 1.6])
    assert run(False) == pytest.approx([0.5, 2.2])


def test_spatial_fifo_keeps_the_newest_frames() -> None:
    mem, x = small(), frames(5)
    feed(mem, x)
    assert len(mem.spatial) == 2
    assert torch.equal(mem.spatial[0], ops.pool_map(x[3], 2))
    assert torch.equal(mem.spatial[1], ops.pool_map(x[4], 2))
    assert mem.spatial_prov.start.tolist() == [3.0, 4.0]


def test_readout_order_and_budget_once_full() -> None:
    mem = small()
    feed(mem, frames(9))
    snap = mem.snapshot()
    out = snap.readout()
    assert [p for p, _ in out.parts] == ['abstract', 'temporal', 'retrieved', 'spatial']
    budget = SMALL.token_count
    assert out.tokens.shape == (budget, D)
    assert sum(n for _, n in out.parts) == budget
    parts = [e.part for e in out.evidence]
    assert parts == ['abstract'] * 2 + ['temporal'] * 3 + ['retrieved'] * 2 + ['spatial'] * 2
    temporal = [e.stamp for e in out.evidence if e.part == 'temporal']
    assert temporal == sorted(temporal)
    assert snap.span() == (0.0, 8.0)


def test_retrieval_paper_picks_nearest_buffered_frame() -> None:
    mem, x = small(retrieved_frames=1), frames(8, seed=2)
    feed(mem, x)
    snap = mem.snapshot()
    top = int(ops.largest(mem.temporal.prov.weight, 1)[0])
    cent = mem.temporal.elements[top].reshape(1, -1)
    buffered = x[3:]  # the last 5 frames
    keys = torch.stack([ops.pool_map(ops.pool_map(f, 2), 2).reshape(-1) for f in buffered])
    best = int(ops.nearest_frames(keys, cent)[0])
    (ev,) = [e for e in snap.readout().evidence if e.part == 'retrieved']
    assert ev.stamp == 3.0 + best
    assert torch.equal(snap.parts[2].elements[0], ops.pool_map(buffered[best], 2))


def test_retrieval_released_indexes_frames_by_cluster_id() -> None:
    mem = small(retrieval='released', buffer_capped=False)
    feed(mem, frames(30, seed=4))
    ev = [e for e in mem.snapshot().readout().evidence if e.part == 'retrieved']
    # the released code's "key frames" are frames number (cluster id): always early frames
    assert all(e.stamp < 3 for e in ev)
    order = ops.largest(mem.temporal.prov.weight, 2).tolist()
    assert [e.stamp for e in ev] == [float(i) for i in order]


def test_buffer_cap_and_unbounded_variant() -> None:
    capped, unbounded, x = small(), small(buffer_capped=False), frames(12)
    feed(capped, x)
    feed(unbounded, x)
    assert len(capped.buffer) == 5
    assert len(unbounded.buffer) == 12
    assert capped.snapshot().buffer.prov.start.tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert unbounded.snapshot().nbytes > capped.snapshot().nbytes


def test_window_filter_returns_only_overlapping_evidence() -> None:
    mem = small()
    feed(mem, frames(20))
    window = TimeWindow(15, 17)  # stamps here are frame numbers, in ns
    out = mem.snapshot().readout(window)
    assert out.evidence
    assert all(window.overlaps(e.start, e.end) for e in out.evidence)
    assert out.tokens.shape[0] == sum(n for _, n in out.parts)
    assert mem.snapshot().readout(TimeWindow(100, None)).tokens.shape[0] == 0


def test_camera_filter_and_mixed_clusters() -> None:
    mem = small()
    feed(mem, frames(20), cameras=('left', 'right'))
    snap = mem.snapshot()
    assert snap.cameras == ('left', 'right')
    left = snap.readout(cameras=['left'])
    assert all('left' in e.camera.split(',') for e in left.evidence)
    assert {e.camera for e in snap.readout(cameras=['right']).evidence if e.part == 'spatial'} == {
        'right'
    }
    assert any(e.camera == 'left,right' for e in snap.readout().evidence)
    assert snap.readout(cameras=['nope']).tokens.shape[0] == 0


def test_unweighted_random_init_is_seeded() -> None:
    def state(seed: int) -> list[torch.Tensor]:
        mem = small(kmeans_weighted=False, kmeans_init='random', seed=seed)
        feed(mem, frames(15))
        return list(mem.temporal.elements)

    a, b = state(1), state(1)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_weights_sum_to_frames_seen_in_every_variant() -> None:
    for weighted in (True, False):
        mem = small(kmeans_weighted=weighted)
        feed(mem, frames(17))
        assert mem.temporal.prov.weight.sum().item() == 17.0
        assert mem.snapshot().frames_seen == 17


def test_learned_projection_needs_qk_and_identity_ignores_it() -> None:
    with pytest.raises(ConfigError, match='learned'):
        small(abstract_projection='learned')
    qk = (nn.Linear(D, 2), nn.Linear(D, 2))
    assert StarMemory(SMALL, D, qk=qk).qk is qk
    assert (
        StarMemory(dataclasses.replace(SMALL, abstract_projection='identity'), D, qk=qk).qk is None
    )


def test_bad_frames_are_rejected() -> None:
    mem = small()
    with pytest.raises(BadFrameError, match='feature map'):
        mem.update(torch.zeros(4, 4, D + 1), 0, 'cam')
    for stamp in (float('nan'), 2.5, True, '3'):
        with pytest.raises(BadFrameError, match='integer nanoseconds'):
            mem.update(torch.zeros(4, 4, D), stamp, 'cam')  # type: ignore[arg-type]
    for name in ('a,b', 'a\x00b', ''):
        with pytest.raises(BadFrameError, match='camera name'):
            mem.update(torch.zeros(4, 4, D), 0, name)
    assert mem.snapshot().frames_seen == 0


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision(dtype: torch.dtype) -> None:
    mem = StarMemory(SMALL, D, dtype=dtype)
    feed(mem, frames(9))
    out = mem.snapshot().readout()
    assert out.tokens.dtype == dtype
    assert out.tokens.shape == (SMALL.token_count, D)
    assert torch.isfinite(out.tokens.float()).all()


def test_snapshot_is_immutable_under_later_updates() -> None:
    mem = small()
    feed(mem, frames(9))
    snap = mem.snapshot()
    before = snap.readout()
    feed(mem, frames(9, seed=5))
    after = snap.readout()
    assert torch.equal(before.tokens, after.tokens)
    assert before.evidence == after.evidence
    assert snap.frames_seen == 9


def test_reset() -> None:
    mem = small()
    feed(mem, frames(9))
    mem.reset()
    snap = mem.snapshot()
    assert snap.frames_seen == 0
    assert snap.readout().tokens.shape == (0, D)
    assert snap.span() is None
