"""Synopsis memory (Flash-VStream v2 Flash Memory): budgets, time order, detail frames."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flash_vstream_ros.config import MemoryConfig, SynopsisConfig
from flash_vstream_ros.memory import SynopsisMemory, build_memory, ops

pytestmark = pytest.mark.unit

D = 4
SMALL = SynopsisConfig(clusters=4, cluster_size=2, detail_frames=2, detail_size=4, buffer_frames=6)


def frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 8, 8, D, generator=torch.Generator().manual_seed(seed))  # (N, 8, 8, D)


def feed(mem: SynopsisMemory, x: torch.Tensor) -> None:
    for i in range(x.shape[0]):
        mem.update(x[i], i, 'cam')  # stamps: ns


def test_default_and_jetson_budgets() -> None:
    fill = build_memory(MemoryConfig(kind='synopsis'), 16).snapshot().fill()
    assert fill == {'synopsis': (0, 3840), 'detail': (0, 7680)}
    assert sum(v[1] for v in fill.values()) == 11_520
    jetson = SynopsisConfig(clusters=15, detail_frames=0)
    assert jetson.token_count == 960
    mem = SynopsisMemory(dataclasses.replace(jetson, cluster_size=2), D)
    feed(mem, frames(20))
    out = mem.snapshot().readout()
    assert out.parts == (('synopsis', 60), ('detail', 0))
    assert len(mem.buffer) == 0  # no detail frames: nothing buffered


def test_first_frames_then_merges_and_time_order() -> None:
    mem, x = SynopsisMemory(SMALL, D), frames(10)
    feed(mem, x[:4])
    for i in range(4):
        assert torch.equal(mem.synopsis.elements[i], ops.pool_map(x[i], 2))
    feed(mem, x[4:])
    assert mem.synopsis.prov.weight.sum().item() == 10.0
    out = mem.snapshot().readout()
    assert out.tokens.shape == (SMALL.token_count, D)
    syn = [e.stamp for e in out.evidence if e.part == 'synopsis']
    det = [e.stamp for e in out.evidence if e.part == 'detail']
    assert syn == sorted(syn)
    assert det == sorted(det)
    assert [p for p, _ in out.parts] == ['synopsis', 'detail']


def test_detail_frames_are_full_resolution_and_nearest_to_largest_clusters() -> None:
    mem, x = SynopsisMemory(dataclasses.replace(SMALL, detail_frames=1), D), frames(12, seed=3)
    feed(mem, x)
    snap = mem.snapshot()
    top = int(ops.largest(mem.synopsis.prov.weight, 1)[0])
    cent = mem.synopsis.elements[top].reshape(1, -1)
    buffered = x[6:]
    keys = torch.stack([ops.pool_map(ops.pool_map(f, 4), 2).reshape(-1) for f in buffered])
    best = int(ops.nearest_frames(keys, cent)[0])
    (ev,) = [e for e in snap.readout().evidence if e.part == 'detail']
    assert ev.stamp == 6.0 + best
    assert snap.parts[1].elements[0].shape == (4, 4, D)
    assert torch.equal(snap.parts[1].elements[0], ops.pool_map(buffered[best], 4))


def test_memory_does_not_alias_the_callers_tensor() -> None:
    mem = SynopsisMemory(dataclasses.replace(SMALL, detail_size=8), D)  # detail = full grid
    batch = frames(3)
    feed(mem, batch)
    before = mem.snapshot().readout().tokens.clone()
    batch.zero_()
    assert torch.equal(mem.snapshot().readout().tokens, before)
    assert all(t.untyped_storage().data_ptr() != batch.untyped_storage().data_ptr()
               for t in mem.buffer.slots)  # fmt: skip
