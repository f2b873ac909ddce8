"""A memory that knows when: timeline segments, window readouts, chunked abstract updates,
long-term parts fed from frames leaving the recent part, integer-nanosecond stamps, and the
value checks on load."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch

from flash_vstream_ros.config import MemoryConfig, StarConfig, TimelineConfig
from flash_vstream_ros.errors import MemoryFileError
from flash_vstream_ros.memory import StarMemory, SynopsisMemory, build_memory, ops
from flash_vstream_ros.memory.base import TimeWindow
from flash_vstream_ros.memory.prov import Prov
from flash_vstream_ros.memory.timeline import Timeline

pytestmark = pytest.mark.unit

D = 4
S = 1_000_000_000  # ns per second
T0 = 1_000 * S  # stamps start at 1000 s, as a robot's header stamps do
SMALL = StarConfig(
    spatial_frames=2, spatial_size=2, temporal_clusters=3, temporal_size=2, abstract_slots=2,
    abstract_size=1, retrieved_frames=2, retrieved_size=2, buffer_frames=5,
)  # fmt: skip
TL = TimelineConfig(segments=4, segment_size=1, frame_size=2)


def star(timeline: TimelineConfig | None = TL, **changes: Any) -> StarMemory:
    return StarMemory(dataclasses.replace(SMALL, **changes), D, timeline=timeline)


def scenes(pattern: list[int], seed: int = 0, noise: float = 0.05) -> torch.Tensor:
    """Frames (N, 4, 4, D) of a few distinct scenes (one random map each) plus noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(max(pattern) + 1, 4, 4, D, generator=g) * 3  # (K, 4, 4, D)
    return base[pattern] + noise * torch.randn(len(pattern), 4, 4, D, generator=g)


def feed(
    mem: StarMemory | SynopsisMemory,
    x: torch.Tensor,
    cams: tuple[str, ...] = ('cam',),
    period: int = S // 10,
) -> list[int]:
    stamps = [T0 + i * period for i in range(x.shape[0])]
    for i, stamp in enumerate(stamps):
        mem.update(x[i], stamp, cams[i % len(cams)])
    return stamps


# ------------------------------------------------------------------ the timeline rule


def line(values: list[float], k: int, cams: list[int] | None = None) -> Timeline:
    """A timeline of 1-D maps (1x1x1) fed ``values`` at stamps 0, 1, 2... ns."""
    tl = Timeline(k, 1, 1, torch.device('cpu'), torch.float32)
    for i, v in enumerate(values):
        m = torch.full((1, 1, 1), v)
        tl.add(m, m.clone(), Prov.frame(i, 1 << (cams[i] if cams else 0)))
    return tl


def test_timeline_merges_the_cheapest_adjacent_pair() -> None:
    """0, 0.1 | 5, 5.1 | 10 with K=3: the two near pairs merge, the far frame stays alone.

    Frame 3 (5.1) makes 4 segments: adjacent Ward costs 0.005 (0|0.1), 12.0 (0.1|5),
    0.005 (5|5.1): the first (earliest) 0.005 pair merges; frame 4 then costs 0.005 (5|5.1)
    against 12.2 and 12.0... so 5 and 5.1 merge."""
    tl = line([0.0, 0.1, 5.0, 5.1, 10.0], k=3)
    assert [float(m) for m in tl.means] == pytest.approx([0.05, 5.05, 10.0])
    assert tl.prov.weight.tolist() == [2.0, 2.0, 1.0]
    assert tl.prov.start.tolist() == [0, 2, 4]
    assert tl.prov.end.tolist() == [1, 3, 4]
    assert len(tl.costs) == 3
    assert tl.costs[2] == math.inf


def test_timeline_never_merges_across_time_or_cameras() -> None:
    """A recurring scene does not join its earlier run: segments stay contiguous in time."""
    tl = line([0.0, 9.0, 0.0, 9.0, 0.0, 9.0], k=4)
    starts, ends = tl.prov.start.tolist(), tl.prov.end.tolist()
    assert all(a <= b for a, b in zip(starts, ends, strict=True))
    assert all(ends[i] < starts[i + 1] for i in range(len(starts) - 1))  # no overlap
    assert tl.prov.weight.sum().item() == 6.0
    # two cameras interleaved: camera 0 shows 0, camera 1 shows 9; each camera's run merges
    two = line([0.0, 9.0, 0.0, 9.0, 0.0, 9.0], k=2, cams=[0, 1, 0, 1, 0, 1])
    assert sorted(float(m) for m in two.means) == pytest.approx([0.0, 9.0])
    assert sorted(two.prov.cams.tolist()) == [1, 2]


def test_timeline_keeps_the_representative_nearest_the_mean() -> None:
    """1.3|1.35 merge first (two singletons: a tie, either may represent them); then 1.0
    joins them (cost 2/3 * 0.325^2 against 2/3 * 1.675^2 for 3.0): mean 1.2167, and the pair's
    representative, nearer than 1.0, stays."""
    tl = line([1.0, 1.3, 1.35, 3.0], k=2)
    assert float(tl.means[0]) == pytest.approx((1.0 + 1.3 + 1.35) / 3)
    rep = float(tl.frames[0])
    assert rep in (pytest.approx(1.3), pytest.approx(1.35))
    assert tl.frame_prov.start.tolist() == [1 if rep < 1.33 else 2, 3]  # their exact stamps
    assert tl.frame_prov.weight.tolist() == [1.0, 1.0]


def test_timeline_cost_cache_is_rebuilt_on_load() -> None:
    mem = star()
    feed(mem, scenes([0] * 5 + [1] * 5 + [2] * 5 + [0] * 5))
    tensors, meta = mem.snapshot().state()
    again = star()
    again.load_state(tensors, meta)
    assert again.timeline.costs == pytest.approx(mem.timeline.costs, rel=1e-6)


# ------------------------------------------------------------------ window readouts


def test_window_readout_draws_only_on_the_window() -> None:
    """Scenes recur (0 1 2 0 1 2 ...): every temporal cluster spans the whole run, yet a
    window's evidence lies inside it; whole-history parts never appear."""
    pattern = [s for s in (0, 1, 2) * 4 for _ in range(10)]  # 120 frames, 12 s
    mem = star(buffer_frames=5)
    stamps = feed(mem, scenes(pattern))
    snap = mem.snapshot()
    assert (
        min(
            int(e) - int(s)
            for s, e in zip(mem.temporal.prov.start, mem.temporal.prov.end, strict=True)
        )
        > 5 * S
    )
    for lo, hi in ((0.0, 2.5), (3.0, 6.0), (1.0, 1.05), (11.0, 12.0)):
        window = TimeWindow(T0 + int(lo * S), T0 + int(hi * S))
        out = snap.readout(window)
        assert out.evidence, (lo, hi)
        assert {e.part for e in out.evidence} <= {
            'timeline',
            'frames',
            'timeline_frames',
            'spatial',
        }
        w0, w1 = T0 + int(lo * S), T0 + int(hi * S)
        inside = [w0 <= e.start and e.end <= w1 for e in out.evidence]
        assert all(inside) or out.parts == (('timeline', len(out.evidence)),), (lo, hi)
        assert out.tokens.shape[0] == sum(n for _, n in out.parts) <= SMALL.token_count
        held = [s for s in stamps if w0 <= s <= w1]
        assert held  # every window here holds frames, and none is refused


def test_window_inside_one_long_segment_comes_by_its_overlap() -> None:
    """A still scene for 10 s then another: a 0.2 s window in the middle of the old scene has
    no buffered frame and no representative in it; its segment comes in with its true span."""
    mem = star(buffer_frames=2, timeline=TimelineConfig(segments=2, segment_size=1, frame_size=2))
    feed(mem, scenes([0] * 100 + [1] * 100))
    w0, w1 = T0 + 5 * S, T0 + 5 * S + S // 5
    out = mem.snapshot().readout(TimeWindow(w0, w1))
    assert [e.part for e in out.evidence] == ['timeline']
    (ev,) = out.evidence
    assert ev.start <= w0
    assert w1 <= ev.end
    assert ev.weight == 100.0


def test_open_questions_keep_the_papers_readout() -> None:
    mem = star()
    feed(mem, scenes([0, 1, 2] * 5))
    out = mem.snapshot().readout()
    assert [p for p, _ in out.parts] == ['abstract', 'temporal', 'retrieved', 'spatial']
    assert out.tokens.shape[0] == SMALL.token_count


def test_without_a_timeline_windows_select_by_mean_stamp() -> None:
    """segments=0 is the paper's memory: a window selects elements by their mean stamp."""
    mem = star(timeline=None)
    feed(mem, scenes([0, 1, 2] * 5))
    snap = mem.snapshot()
    assert not snap.has_timeline
    out = snap.readout(TimeWindow(T0, T0 + S))
    assert all(T0 <= e.stamp <= T0 + S for e in out.evidence)


def test_stamps_are_exact_nanoseconds() -> None:
    stamp = 1_796_190_000_123_456_789  # a float second would give ...123456768
    mem = star()
    mem.update(scenes([0])[0], stamp, 'cam')
    snap = mem.snapshot()
    assert snap.span() == (stamp, stamp)
    assert {e.stamp for e in snap.readout().evidence} == {stamp}
    assert {e.stamp for e in snap.readout(TimeWindow(stamp, stamp)).evidence} == {stamp}
    tensors, meta = snap.state()
    again = star()
    again.load_state(tensors, meta)
    assert again.snapshot().span() == (stamp, stamp)


# ------------------------------------------------------------------ abstract memory, recent frames


def test_abstract_updates_once_per_chunk_with_the_chunks_tokens_as_keys() -> None:
    mem = star(abstract_chunk=2, long_term_after_recent=False)
    x = scenes([0, 1, 2, 3, 4], noise=0.5)
    feed(mem, x[:3])
    first = torch.stack([ops.pool_map(x[i], 1).reshape(D) for i in range(2)])  # (2, D)
    assert torch.equal(mem.abstract.reshape(2, D), first)  # frame 2 waits for its chunk
    assert mem.chunk.shape[0] == 1
    mem.update(x[3], T0 + 3 * S // 10, 'cam')
    keys = torch.stack([ops.pool_map(x[i], 1).reshape(D) for i in (2, 3)])  # (2, D)
    attn = torch.softmax(first @ keys.T / math.sqrt(D), dim=-1)  # (2 slots, 2 keys)
    expected = 0.8 * first + 0.2 * attn @ keys
    torch.testing.assert_close(mem.abstract.reshape(2, D), expected)
    assert mem.chunk.shape[0] == 0
    assert mem.abstract_prov.weight.tolist() == [3.0, 3.0]


def test_chunks_keep_the_abstract_slots_apart() -> None:
    """Per-frame updates with 1x1 slots give every slot the same update (one key): the slots
    are one vector at once. Chunked updates from distinct seeds keep them apart for a while
    (with identity q/k they drift together on long runs: see the README's memory figures)."""
    cfg: dict[str, Any] = {'abstract_slots': 4, 'temporal_clusters': 4}
    pattern = [s for s in (0, 1, 2, 3) * 17 for _ in range(3)][:50]  # 50 frames
    cos = {}
    for chunk in (1, 0):
        mem = star(TL, abstract_chunk=chunk, long_term_after_recent=False, **cfg)
        feed(mem, scenes(pattern, noise=0.3))
        slots = torch.nn.functional.normalize(mem.abstract.reshape(4, D), dim=1)
        sim = slots @ slots.T - 2 * torch.eye(4)
        cos[chunk] = float(sim.max())
    assert cos[1] > 0.999
    assert cos[0] < 0.99


def test_long_term_parts_take_frames_as_they_leave_the_recent_part() -> None:
    mem = star(timeline=None)  # spatial_frames=2: the two newest frames are "now"
    x = scenes([0, 1, 2], noise=0.5)
    feed(mem, x[:2])
    assert len(mem.temporal) == 0
    assert mem.abstract.shape[0] == 0
    feed(mem, x[2:3])
    assert len(mem.temporal) == 1  # frame 0 left the recent part
    want = ops.pool_map(ops.pool_map(x[0], 2), 2)  # from its spatial map
    assert torch.equal(mem.temporal.elements[0], want)
    assert mem.temporal.prov.start.tolist() == [T0]


def test_synopsis_keeps_recent_frames_and_a_timeline() -> None:
    cfg = MemoryConfig(kind='synopsis', timeline=TL)
    cfg = dataclasses.replace(
        cfg,
        synopsis=dataclasses.replace(
            cfg.synopsis, clusters=3, cluster_size=2, detail_frames=1, detail_size=4,
            buffer_frames=4, recent_frames=2, recent_size=4,
        ),
    )  # fmt: skip
    mem = build_memory(cfg, D)
    assert isinstance(mem, SynopsisMemory)
    feed(mem, scenes([0] * 5 + [1] * 5))
    snap = mem.snapshot()
    assert list(snap.fill()) == ['synopsis', 'detail', 'recent']
    assert snap.fill()['recent'] == (32, 32)
    assert snap.has_timeline
    tensors, meta = snap.state()
    again = build_memory(cfg, D)
    again.load_state(tensors, meta)
    assert again.snapshot().readout().evidence == snap.readout().evidence


# ------------------------------------------------------------------ state: round trip and checks


def test_state_round_trip_with_pending_chunk_continues_identically() -> None:
    x = scenes(list(range(21)), noise=0.3)  # distinct frames: seeds, then chunks
    direct, resumed = star(), star()
    feed(direct, x)
    feed(resumed, x[:11])
    assert resumed.chunk.shape[0] > 0
    tensors, meta = resumed.snapshot().state()
    resumed = star()
    resumed.load_state(tensors, meta)
    for i in range(11, x.shape[0]):
        resumed.update(x[i], T0 + i * S // 10, 'cam')
    a, b = direct.snapshot().state()[0], resumed.snapshot().state()[0]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _corrupt(tensors: dict[str, torch.Tensor], key: str, index: int, value: Any) -> None:
    t = tensors[key].clone()
    t.view(-1)[index] = value
    tensors[key] = t


@pytest.mark.parametrize(
    ('key', 'value', 'match'),
    [
        ('temporal.maps', math.nan, 'non-finite'),
        ('timeline.maps', math.inf, 'non-finite'),
        ('abstract.weight', -1.0, 'weight below 1'),
        ('buffer.off', math.nan, 'non-finite'),
        ('temporal.start', T0 + 10**12, 'start stamp is after its end'),
        ('temporal.off', 1e30, 'mean stamp outside its span'),
        ('spatial.cams', 1 << 5, 'camera bits'),
        ('timeline.cams', 0, 'camera bits'),
        ('temporal.dist', math.nan, 'negative or NaN'),
    ],
)
def test_values_no_memory_produces_are_refused_and_nothing_is_lost(
    key: str, value: Any, match: str
) -> None:
    mem = star()
    feed(mem, scenes([0, 1, 2] * 5))
    tensors, meta = mem.snapshot().state()
    before = mem.snapshot().readout()
    _corrupt(tensors, key, 0, value)
    with pytest.raises(MemoryFileError, match=match):
        mem.load_state(tensors, meta)
    after = mem.snapshot().readout()
    assert torch.equal(before.tokens, after.tokens)
    assert before.evidence == after.evidence


def test_format_version_1_is_refused_with_a_reason() -> None:
    mem = star()
    tensors, meta = mem.snapshot().state()
    with pytest.raises(MemoryFileError, match='float-second stamps'):
        mem.load_state(tensors, {**meta, 'format_version': 1})


def test_camera_names_in_a_state_are_checked() -> None:
    mem = star()
    feed(mem, scenes([0, 1]))
    tensors, meta = mem.snapshot().state()
    for bad in (['a,b'], ['cam', 'cam'], ['x\x00']):
        with pytest.raises(MemoryFileError, match='cameras'):
            mem.load_state(tensors, {**meta, 'cameras': bad})


def test_learned_qk_change_a_chunked_update_and_not_a_per_frame_one() -> None:
    """With one key per update (1x1 slots, one frame) the softmax is 1 whatever q/k are: the
    checkpoint's projections have no effect. With a chunk's keys they do."""
    torch.manual_seed(0)
    qk = (torch.nn.Linear(D, 3), torch.nn.Linear(D, 3))
    x = scenes(list(range(12)), noise=0.5)
    out = {}
    for chunk in (1, 4):
        for name, proj in (('identity', None), ('learned', qk)):
            cfg = dataclasses.replace(
                SMALL, abstract_chunk=chunk, long_term_after_recent=False, abstract_seed_cosine=1.0
            )
            mem = StarMemory(cfg, D, qk=proj)
            feed(mem, x)
            out[chunk, name] = mem.abstract.clone()
    torch.testing.assert_close(out[1, 'identity'], out[1, 'learned'])
    assert not torch.allclose(out[4, 'identity'], out[4, 'learned'], atol=1e-4)
