"""Invariants of both memories over random small configs and streams (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest
import torch

from flash_vstream_ros.config import StarConfig, SynopsisConfig
from flash_vstream_ros.memory import StarMemory, SynopsisMemory
from flash_vstream_ros.memory.base import TimeWindow

pytestmark = pytest.mark.unit

D = 3
ORDER = {
    'star': ['abstract', 'temporal', 'retrieved', 'spatial'],
    'synopsis': ['synopsis', 'detail'],
}


@st.composite
def star_configs(draw: st.DrawFn) -> StarConfig:
    k = draw(st.integers(1, 4))
    return StarConfig(
        spatial_frames=draw(st.integers(1, 3)), spatial_size=draw(st.integers(2, 3)),
        temporal_clusters=k, temporal_size=draw(st.integers(1, 2)),
        abstract_slots=draw(st.integers(0, 3)), abstract_size=draw(st.integers(1, 2)),
        abstract_chunk=draw(st.integers(0, 3)),
        abstract_seed_cosine=draw(st.sampled_from([0.5, 1.0])),
        long_term_after_recent=draw(st.booleans()),
        retrieved_frames=draw(st.integers(0, k)), retrieved_size=draw(st.integers(1, 2)),
        buffer_frames=draw(st.integers(1, 6)), buffer_capped=draw(st.booleans()),
        kmeans_weighted=draw(st.booleans()),
        kmeans_init=draw(st.sampled_from(['deterministic', 'random'])),
        retrieval=draw(st.sampled_from(['paper', 'released'])), seed=draw(st.integers(0, 3)),
    )  # fmt: skip


@st.composite
def synopsis_configs(draw: st.DrawFn) -> SynopsisConfig:
    k = draw(st.integers(1, 4))
    return SynopsisConfig(
        clusters=k, cluster_size=draw(st.integers(1, 2)), detail_frames=draw(st.integers(0, k)),
        detail_size=draw(st.integers(1, 4)), buffer_frames=draw(st.integers(1, 6)),
        kmeans_weighted=draw(st.booleans()),
    )  # fmt: skip


@st.composite
def streams(draw: st.DrawFn) -> tuple[torch.Tensor, list[int], list[str]]:
    n = draw(st.integers(0, 14))
    seed = draw(st.integers(0, 2**16))
    x = torch.randn(n, 4, 4, D, generator=torch.Generator().manual_seed(seed))
    gaps = draw(st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n))
    stamps = [round(t * 1e9) for t in torch.tensor([0.0, *gaps]).cumsum(0)[1:].tolist()]  # ns
    cams = draw(st.lists(st.sampled_from(['a', 'b', 'c']), min_size=n, max_size=n))
    return x, stamps, cams


def build(cfg: Any) -> StarMemory | SynopsisMemory:
    return StarMemory(cfg, D) if isinstance(cfg, StarConfig) else SynopsisMemory(cfg, D)


def run(
    cfg: Any, stream: tuple[torch.Tensor, list[int], list[str]]
) -> StarMemory | SynopsisMemory:
    mem = build(cfg)
    x, stamps, cams = stream
    for i, (t, c) in enumerate(zip(stamps, cams, strict=True)):
        mem.update(x[i], t, c)
    return mem


configs = st.one_of(star_configs(), synopsis_configs())


@settings(max_examples=40, deadline=None)
@given(cfg=configs, stream=streams())
def test_budget_weights_order_and_spans(cfg: Any, stream: Any) -> None:
    mem = run(cfg, stream)
    snap = mem.snapshot()
    n = len(stream[1])
    out = snap.readout()
    assert out.tokens.shape[0] == sum(c for _, c in out.parts) <= cfg.token_count
    assert [p for p, _ in out.parts] == ORDER[snap.kind]
    fill = snap.fill()
    assert sum(cap for _, cap in fill.values()) == cfg.token_count
    assert {p: used for p, (used, _) in fill.items()} == dict(out.parts)
    clusters = mem.temporal if isinstance(mem, StarMemory) else mem.synopsis
    held = n  # frames the clusters have taken: all, but the recent ones when they wait
    if isinstance(mem, StarMemory) and cfg.long_term_after_recent:
        held = max(0, n - cfg.spatial_frames)
    assert clusters.prov.weight.sum().item() == held
    assert snap.frames_seen == n
    for e in out.evidence:
        assert e.start <= e.stamp <= e.end
        assert e.weight >= 1
    parts = [e.part for e in out.evidence]
    assert parts == sorted(parts, key=ORDER[snap.kind].index)
    for part in ('temporal', 'synopsis', 'detail'):
        stamps = [e.stamp for e in out.evidence if e.part == part]
        assert stamps == sorted(stamps)
    if snap.span() is not None and out.evidence:
        lo, hi = snap.span()  # type: ignore[misc]
        assert lo <= min(e.start for e in out.evidence)
        assert hi >= max(e.end for e in out.evidence)


@settings(max_examples=30, deadline=None)
@given(cfg=configs, stream=streams(), lo=st.floats(0.0, 40.0), width=st.floats(0.0, 20.0),
       cams=st.sets(st.sampled_from(['a', 'b', 'c', 'z'])))  # fmt: skip
def test_filters_select_exactly_the_matching_evidence(
    cfg: Any, stream: Any, lo: float, width: float, cams: set[str]
) -> None:
    snap = run(cfg, stream).snapshot()
    everything = snap.readout().evidence
    window = TimeWindow(round(lo * 1e9), round((lo + width) * 1e9))
    got = snap.readout(window, cams).evidence
    expected = [
        e for e in everything
        if window.contains(e.stamp)
        and (not cams or set(e.camera.split(',')) & cams)
    ]  # fmt: skip
    assert list(got) == expected
    out = snap.readout(window, cams)
    assert out.tokens.shape[0] == sum(c for _, c in out.parts)


@settings(max_examples=15, deadline=None)
@given(cfg=configs, stream=streams())
def test_same_stream_same_state(cfg: Any, stream: Any) -> None:
    (ta, ma), (tb, mb) = run(cfg, stream).snapshot().state(), run(cfg, stream).snapshot().state()
    assert ma == mb
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_full_memory_reads_out_its_whole_budget() -> None:
    cfg = StarConfig(
        temporal_clusters=3,
        temporal_size=2,
        abstract_slots=2,
        spatial_frames=2,
        spatial_size=2,
        retrieved_frames=2,
        retrieved_size=2,
        buffer_frames=4,
    )
    x = torch.randn(6, 4, 4, D, generator=torch.Generator().manual_seed(0))
    mem = run(cfg, (x, list(range(6)), ['a'] * 6))
    assert mem.snapshot().readout().tokens.shape[0] == cfg.token_count
