"""Token budgets across cameras: fit_readout and concat_readouts."""

from __future__ import annotations

import pytest
import torch

from flash_vstream_ros.engine.readouts import concat_readouts, fit_readout
from flash_vstream_ros.memory.base import Evidence, Readout

pytestmark = pytest.mark.unit


def readout(camera: str = 'cam') -> Readout:
    """abstract: 4 x 1 token, temporal: 5 x 4 tokens, spatial: 1 x 8 tokens (32 tokens)."""
    ev = [Evidence('abstract', camera, i, i, i, 1.0 + i) for i in range(4)]
    ev += [Evidence('temporal', camera, i, i, i, float(w)) for i, w in enumerate([3, 1, 5, 2, 4])]
    ev += [Evidence('spatial', camera, 9, 9, 9, 1.0)]
    rows = torch.arange(32, dtype=torch.float32)[:, None].expand(32, 3)  # (32, 3): row id
    return Readout(rows.clone(), (('abstract', 4), ('temporal', 20), ('spatial', 8)), tuple(ev))


def test_within_budget_unchanged() -> None:
    r = readout()
    assert fit_readout(r, 32) is r


@pytest.mark.parametrize('budget', [1, 5, 8, 12, 16, 20, 31])
def test_fit_keeps_whole_elements_and_alignment(budget: int) -> None:
    r = readout()
    fit = fit_readout(r, budget)
    assert fit.tokens.shape[0] <= budget
    assert fit.tokens.shape[0] == sum(n for _, n in fit.parts)
    offset = 0
    for name, count in fit.parts:  # every kept element's rows come along with its evidence
        elems = [e for e in fit.evidence if e.part == name]
        per = {'abstract': 1, 'temporal': 4, 'spatial': 8}[name]
        assert count == per * len(elems)
        offset += count
    assert offset == fit.tokens.shape[0]


def test_fit_prefers_heavy_elements_in_order() -> None:
    fit = fit_readout(readout(), 16)
    temporal = [e.weight for e in fit.evidence if e.part == 'temporal']
    assert temporal == sorted(temporal, key=[3.0, 1.0, 5.0, 2.0, 4.0].index)  # original order
    assert 1.0 not in temporal  # the lightest cluster goes first
    assert fit.tokens.shape[0] == 16  # rounding leftovers are given back to whole elements
    rows = fit.tokens[:, 0].tolist()
    temporal_rows = [r for r in rows if 4 <= r < 24]
    kept_ids = sorted({int(r - 4) // 4 for r in temporal_rows})
    assert [[3.0, 1.0, 5.0, 2.0, 4.0][i] for i in kept_ids] == temporal


def test_zero_budget() -> None:
    fit = fit_readout(readout(), 0)
    assert fit.tokens.shape[0] == 0
    assert fit.evidence == ()


def test_concat_fixed_order_and_names() -> None:
    both = concat_readouts([('a', readout('a')), ('b', readout('b'))])
    assert both.tokens.shape[0] == 64
    assert [p for p, _ in both.parts][:3] == ['a:abstract', 'a:temporal', 'a:spatial']
    assert [e.camera for e in both.evidence] == ['a'] * 10 + ['b'] * 10
    empty = Readout(torch.zeros(0, 3), (), ())
    only = concat_readouts([('a', empty), ('b', readout('b'))])
    assert only.parts == readout('b').parts
    assert concat_readouts([('a', empty)]).tokens.shape[0] == 0
