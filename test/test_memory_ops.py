"""Hand-computed cases for the pure tensor functions of the memories (memory/ops.py, prov.py)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from flash_vstream_ros.memory import ops
from flash_vstream_ros.memory.prov import Prov

pytestmark = pytest.mark.unit


def col(*values: float) -> torch.Tensor:
    """1-D points as an (N, 1) tensor."""
    return torch.tensor(values, dtype=torch.float32)[:, None]


def test_pool_map_averages_blocks() -> None:
    x = torch.arange(16, dtype=torch.float32).reshape(4, 4, 1)  # rows 0..3, 4..7, ...
    pooled = ops.pool_map(x, 2)
    assert pooled.shape == (2, 2, 1)
    # top-left block {0, 1, 4, 5} -> 2.5, top-right {2, 3, 6, 7} -> 4.5, ...
    assert pooled[..., 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert ops.pool_map(x, 1).item() == 7.5
    assert ops.pool_map(x, 4) is x


def test_pool_map_batched_channels_and_dtypes() -> None:
    x = torch.randn(3, 16, 16, 8)
    pooled = ops.pool_map(x, 4)
    assert pooled.shape == (3, 4, 4, 8)
    torch.testing.assert_close(pooled[1, 0, 0], x[1, :4, :4].mean((0, 1)))
    for dtype in (torch.float16, torch.bfloat16):
        assert ops.pool_map(x.to(dtype), 8).dtype == dtype


def test_sq_dists() -> None:
    d = ops.sq_dists(col(0.0, 3.0), col(1.0, 5.0, 3.0))
    assert d.tolist() == [[1.0, 25.0, 9.0], [4.0, 4.0, 0.0]]
    assert ops.self_sq_dists(col(0.0, 2.0)).tolist() == [[0.0, 4.0], [4.0, 0.0]]


def brute_force_merge(x: torch.Tensor, w: torch.Tensor) -> tuple[int, int]:
    """The pair whose merge gives the least weighted within-cluster sum of squares."""
    best, pair = math.inf, (-1, -1)
    for i, j in itertools.combinations(range(len(x)), 2):
        mean = (w[i] * x[i] + w[j] * x[j]) / (w[i] + w[j])
        sse = float(w[i] * (x[i] - mean).square().sum() + w[j] * (x[j] - mean).square().sum())
        if sse < best - 1e-9:
            best, pair = sse, (i, j)
    return pair


def test_best_merge_hand_case_weights_change_the_choice() -> None:
    x = col(0.0, 1.0, 2.5)
    # unit weights: costs 0.5 (0,1), 1.125 (1,2), 3.125 (0,2) -> (0, 1)
    assert ops.best_merge(x, torch.ones(3)) == (0, 1)
    # weights 100, 100, 1: costs 50 (0,1), 100/101*2.25 = 2.23 (1,2) -> (1, 2)
    w = torch.tensor([100.0, 100.0, 1.0])
    assert ops.best_merge(x, w) == (1, 2)
    cost = ops.merge_costs(x, w)
    assert cost[0, 1].item() == pytest.approx(50.0)
    assert cost[1, 2].item() == pytest.approx(100 / 101 * 2.25)
    assert math.isinf(cost[0, 0].item())


def test_best_merge_matches_brute_force_on_random_points() -> None:
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        x = torch.randn(7, 5, generator=g)
        w = torch.randint(1, 20, (7,), generator=g).float()
        assert ops.best_merge(x, w) == brute_force_merge(x, w)


def test_weighted_merge() -> None:
    merged = ops.weighted_merge(torch.tensor([0.0, 4.0]), torch.tensor([4.0, 0.0]), 3.0, 1.0)
    assert merged.tolist() == [1.0, 3.0]
    half = ops.weighted_merge(torch.ones(2).half(), torch.zeros(2).half(), 1.0, 1.0)
    assert half.dtype == torch.float16
    assert half.tolist() == [0.5, 0.5]


def test_farthest_point_init() -> None:
    x = col(0.0, 1.0, 10.0, 4.0)
    # heaviest first (ties: first index), then the point farthest from the seeds
    assert ops.farthest_point_init(x, torch.ones(4), 3).tolist() == [0, 2, 3]
    assert ops.farthest_point_init(x, torch.tensor([1.0, 1.0, 1.0, 5.0]), 2).tolist() == [3, 2]


def test_random_init_is_seeded() -> None:
    a = ops.random_init(10, 4, torch.Generator().manual_seed(7))
    b = ops.random_init(10, 4, torch.Generator().manual_seed(7))
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 4


def test_lloyd_kmeans_hand_case() -> None:
    x = col(0.0, 1.0, 10.0, 11.0)
    cent, labels = ops.lloyd_kmeans(x, torch.ones(4), 2, 10, 1e-4, torch.tensor([0, 2]))
    assert cent[:, 0].tolist() == [0.5, 10.5]
    assert labels.tolist() == [0, 0, 1, 1]
    # weights 3, 1 on the first pair: weighted mean (0*3 + 1*1)/4 = 0.25
    w = torch.tensor([3.0, 1.0, 1.0, 1.0])
    cent, _ = ops.lloyd_kmeans(x, w, 2, 10, 1e-4, torch.tensor([0, 2]))
    assert cent[:, 0].tolist() == [0.25, 10.5]


def test_lloyd_kmeans_moves_a_bad_start_and_stops_at_max_iters() -> None:
    x = col(0.0, 1.0, 2.0, 10.0)
    # start at 0 and 1: first assignment {0}, {1, 2, 10} -> centroids 0, 13/3
    cent, _ = ops.lloyd_kmeans(x, torch.ones(4), 2, 1, 0.0, torch.tensor([0, 1]))
    assert cent[:, 0].tolist() == pytest.approx([0.0, 13 / 3])
    cent, labels = ops.lloyd_kmeans(x, torch.ones(4), 2, 10, 1e-4, torch.tensor([0, 1]))
    assert cent[:, 0].tolist() == pytest.approx([1.0, 10.0])
    assert labels.tolist() == [0, 0, 0, 1]


def test_semantic_attention_single_token_is_an_ema() -> None:
    m = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    e = torch.tensor([[2.0, 2.0]])
    out = ops.semantic_attention(m, e, 0.2)
    torch.testing.assert_close(out, 0.8 * m + 0.2 * e)


def test_semantic_attention_identity_hand_case() -> None:
    m = torch.tensor([[1.0, 0.0]])
    e = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    # scores (2, 0) / sqrt(2): softmax p = 1 / (1 + exp(-sqrt(2)))
    p = 1.0 / (1.0 + math.exp(-math.sqrt(2.0)))
    expected = 0.5 * m + 0.5 * (p * e[0] + (1 - p) * e[1])
    torch.testing.assert_close(ops.semantic_attention(m, e, 0.5), expected)


def test_semantic_attention_learned_projections() -> None:
    q, k = nn.Linear(2, 1, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        q.weight.copy_(torch.tensor([[1.0, 0.0]]))
        k.weight.copy_(torch.tensor([[0.0, 3.0]]))
    m = torch.tensor([[2.0, 5.0]])
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # q(m) = 2, k(e) = (0, 3): scores (0, 6) / sqrt(1)
    p = torch.softmax(torch.tensor([0.0, 6.0]), 0)
    expected = 0.8 * m + 0.2 * (p[0] * e[0] + p[1] * e[1])
    out = ops.semantic_attention(m, e, 0.2, q, k)
    torch.testing.assert_close(out, expected)
    assert not out.requires_grad
    half = ops.semantic_attention(m.half(), e.half(), 0.2, q, k)
    assert half.dtype == torch.float16


def test_largest_is_stable() -> None:
    assert ops.largest(torch.tensor([2.0, 5.0, 2.0, 5.0]), 3).tolist() == [1, 3, 0]


def test_retrieval_paper_and_released() -> None:
    buffer = col(0.0, 10.0, 20.0, 30.0)
    cents = col(19.0, 2.0)
    assert ops.nearest_frames(buffer, cents).tolist() == [2, 0]
    # released: the frame numbered like the cluster, clamped to the buffer
    assert ops.released_frames(torch.tensor([7, 1]), 4).tolist() == [3, 1]


def test_prov_aggregate_and_absorb() -> None:
    s = 1_000_000_000  # stamps in ns: 1 s, 3 s, 7 s
    p = Prov.frame(1 * s, 0b01).cat(Prov.frame(3 * s, 0b10)).cat(Prov.frame(7 * s, 0b01))
    g = p.aggregate(torch.tensor([0, 0, 1]), 2)
    assert g.weight.tolist() == [2.0, 1.0]
    assert g.stamp.tolist() == [2 * s, 7 * s]
    assert g.start.tolist() == [1 * s, 7 * s]
    assert g.end.tolist() == [3 * s, 7 * s]
    assert g.cams.tolist() == [0b11, 0b01]
    chunk = Prov.frame(10 * s, 0b100).cat(Prov.frame(12 * s, 0b100))  # mean 11 s
    a = g.absorb(chunk, 0.25)
    assert a.stamp.tolist() == [
        round((0.75 * 2.0 + 0.25 * 11.0) * s),
        round((0.75 * 7.0 + 0.25 * 11.0) * s),
    ]
    assert a.end.tolist() == [12 * s, 12 * s]
    assert a.start.tolist() == [1 * s, 7 * s]
    assert a.weight.tolist() == [4.0, 3.0]
    assert a.cams.tolist() == [0b111, 0b101]
