"""Memory state: exact safetensors round trip, continuation after load, validation errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
import subprocess
import sys
from typing import Any

import pytest
from safetensors.torch import load_file, save_file
import torch

from flash_vstream_ros.config import MemoryConfig, StarConfig, SynopsisConfig
from flash_vstream_ros.errors import MemoryFileError
from flash_vstream_ros.memory import StarMemory, SynopsisMemory, build_memory
from flash_vstream_ros.memory.base import StreamMemory

pytestmark = pytest.mark.unit

D = 4
STAR = StarConfig(
    spatial_frames=1, spatial_size=2, temporal_clusters=3, temporal_size=2, abstract_slots=2,
    abstract_size=1, retrieved_frames=2, retrieved_size=2, buffer_frames=5,
)  # fmt: skip
SYN = SynopsisConfig(clusters=4, cluster_size=2, detail_frames=2, detail_size=4, buffer_frames=6)


def frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, 4, D, generator=torch.Generator().manual_seed(seed))


def feed(mem: StreamMemory, x: torch.Tensor, t0: int = 0) -> None:
    for i in range(x.shape[0]):
        mem.update(x[i], t0 + i, ('a', 'b')[i % 2])  # stamps: ns


def roundtrip(tensors: dict[str, torch.Tensor], meta: dict[str, Any], tmp: Path) -> tuple[
    dict[str, torch.Tensor], dict[str, Any]
]:  # fmt: skip
    save_file(tensors, str(tmp / 'memory.safetensors'))
    (tmp / 'memory.json').write_text(json.dumps(meta))
    return load_file(str(tmp / 'memory.safetensors')), json.loads(
        (tmp / 'memory.json').read_text()
    )


def assert_same_state(a: StreamMemory, b: StreamMemory) -> None:
    (ta, ma), (tb, mb) = a.snapshot().state(), b.snapshot().state()
    assert ma == mb
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    ra, rb = a.snapshot().readout(), b.snapshot().readout()
    assert torch.equal(ra.tokens, rb.tokens)
    assert ra.evidence == rb.evidence


def make(kind: str, **changes: Any) -> StreamMemory:
    if kind == 'star':
        return StarMemory(dataclasses.replace(STAR, **changes), D)
    return SynopsisMemory(dataclasses.replace(SYN, **changes), D)


@pytest.mark.parametrize(
    ('kind', 'changes'),
    [('star', {}), ('star', {'kmeans_weighted': False, 'kmeans_init': 'random'}),
     ('star', {'buffer_capped': False}), ('synopsis', {})],
)  # fmt: skip
def test_state_roundtrips_exactly_and_continues_identically(
    kind: str, changes: dict[str, Any], tmp_path: Path
) -> None:
    x = frames(20)
    mem = make(kind, **changes)
    feed(mem, x[:12])
    tensors, meta = roundtrip(*mem.snapshot().state(), tmp_path)
    copy = make(kind, **changes)
    copy.load_state(tensors, meta)
    assert_same_state(mem, copy)
    feed(mem, x[12:], 12)
    feed(copy, x[12:], 12)
    assert_same_state(mem, copy)


def test_state_meta_is_json_and_versioned() -> None:
    mem = make('star')
    feed(mem, frames(4))
    tensors, meta = mem.snapshot().state()
    assert json.loads(json.dumps(meta)) == meta
    assert meta['format_version'] == 2
    assert meta['kind'] == 'star'
    assert meta['cameras'] == ['a', 'b']
    assert meta['frames_seen'] == 4
    assert tensors['temporal.maps'].shape == (3, 2, 2, D)
    assert all(t.is_contiguous() for t in tensors.values())


def test_empty_state_roundtrips(tmp_path: Path) -> None:
    mem = make('star')
    copy = make('star')
    copy.load_state(*roundtrip(*mem.snapshot().state(), tmp_path))
    assert_same_state(mem, copy)


@pytest.mark.parametrize(
    ('edit', 'match'),
    [(lambda t, m: m.update(format_version=99), 'format_version'),
     (lambda t, m: m.update(kind='synopsis'), 'kind'),
     (lambda t, m: m.update(dim=7), 'dim'),
     (lambda t, m: m['config'].update(temporal_clusters=4), 'temporal_clusters'),
     (lambda t, m: t.pop('temporal.maps'), 'temporal.maps'),
     (lambda t, m: t.update({'temporal.maps': torch.zeros(3, 2, 2, D + 1)}), 'shape'),
     (lambda t, m: t.update({'temporal.maps': torch.zeros(4, 2, 2, D)}), 'shape'),
     (lambda t, m: t.update({'temporal.weight': torch.zeros(2)}), 'temporal.weight'),
     (lambda t, m: t.pop('rng'), 'rng'),
     (lambda t, m: m.update(cameras='a'), 'cameras')],
)  # fmt: skip
def test_load_state_rejects_mismatches(edit: Any, match: str) -> None:
    mem = make('star')
    feed(mem, frames(6))
    tensors, meta = mem.snapshot().state()
    meta = json.loads(json.dumps(meta))
    edit(tensors, meta)
    with pytest.raises(MemoryFileError, match=match):
        make('star').load_state(tensors, meta)


def test_failed_load_leaves_memory_untouched() -> None:
    mem = make('star')
    feed(mem, frames(6))
    tensors, meta = mem.snapshot().state()
    bad_maps = dict(tensors, **{'spatial.maps': torch.zeros(1, 3, 3, D)})
    with pytest.raises(MemoryFileError):
        mem.load_state(bad_maps, meta)
    with pytest.raises(MemoryFileError):
        mem.load_state(tensors, dict(meta, cameras=None))
    assert mem.snapshot().frames_seen == 6


def test_build_memory_chooses_by_kind() -> None:
    star = build_memory(MemoryConfig(star=STAR), D)
    syn = build_memory(MemoryConfig(kind='synopsis', synopsis=SYN), D, dtype=torch.float16)
    assert isinstance(star, StarMemory)
    assert isinstance(syn, SynopsisMemory)
    feed(syn, frames(3))
    assert syn.snapshot().readout().tokens.dtype == torch.float16


def test_memory_imports_without_ros_or_transformers() -> None:
    code = (
        'import sys\n'
        "for name in ('rclpy', 'transformers'):\n"
        '    sys.modules[name] = None\n'
        'import flash_vstream_ros.memory as m\n'
        "assert 'rclpy' not in [k for k, v in sys.modules.items() if v is not None]\n"
        'print(m.build_memory.__name__)\n'
    )
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, '-c', code], cwd=repo, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'build_memory'
