"""Memory files: exact round trips, refusal of truncated/corrupt/foreign files, atomic saves."""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import time

from _engine_fakes import FakeModel, fake_build_memory
import numpy as np
import pytest
from safetensors.torch import save_file as st_save_file
import torch

from flash_vstream_ros.config import AppConfig, with_overrides
from flash_vstream_ros.engine import Engine, Question
from flash_vstream_ros.errors import MemoryFileError
from flash_vstream_ros.io import persistence
from flash_vstream_ros.io.persistence import MemoryRecord, load_file, save_file
from flash_vstream_ros.stamps import to_ns

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def records(n: int = 2, size: int = 64) -> list[MemoryRecord]:
    gen = torch.Generator().manual_seed(0)
    return [
        MemoryRecord(
            key=f'cam{i}',
            tensors={
                'a': torch.randn(size, 8, generator=gen),
                'b': torch.arange(10, dtype=torch.int64),
                'h': torch.randn(3, 4, generator=gen).to(torch.bfloat16),
                'empty': torch.zeros(0, 4),
            },
            meta={'frames': 7 + i, 'stamps': [1.5, 2.5], 'kind': 'fake'},
        )
        for i in range(n)
    ]


def test_round_trip_is_exact(tmp_path: Path) -> None:
    path = tmp_path / 'mem.fvsm'
    recs = records()
    size = save_file(path, recs, {'kind': 'fake', 'frames': 15})
    assert size == path.stat().st_size
    loaded = load_file(path)
    assert loaded.info['kind'] == 'fake'
    assert loaded.info['format_version'] == persistence.FORMAT_VERSION
    assert [r.key for r in loaded.records] == ['cam0', 'cam1']
    for want, got in zip(recs, loaded.records, strict=True):
        assert dict(got.meta) == dict(want.meta)
        assert set(got.tensors) == set(want.tensors)
        for name, tensor in want.tensors.items():
            assert got.tensors[name].dtype == tensor.dtype
            assert torch.equal(got.tensors[name], tensor)


def test_truncated_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / 'mem.fvsm'
    save_file(path, records(), {'kind': 'fake'})
    blob = path.read_bytes()
    for tenth in range(10):
        cut = tmp_path / f'cut{tenth}.fvsm'
        cut.write_bytes(blob[: len(blob) * tenth // 10])
        with pytest.raises(MemoryFileError, match=r'truncated|not a memory file|corrupt'):
            load_file(cut)


def test_corrupt_bytes_are_detected(tmp_path: Path) -> None:
    path = tmp_path / 'mem.fvsm'
    save_file(path, records(), {'kind': 'fake'})
    blob = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    header_end = 8 + int.from_bytes(blob[:8], 'little')
    for _ in range(20):
        bad = bytearray(blob)
        pos = int(rng.integers(header_end, len(blob)))
        bad[pos] ^= 0xFF
        path.write_bytes(bytes(bad))
        with pytest.raises(MemoryFileError, match=r'checksum|corrupt'):
            load_file(path)


def test_foreign_and_future_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / 'notes.txt'
    text.write_text('hello, this is not a memory file at all')
    with pytest.raises(MemoryFileError, match='not a'):
        load_file(text)
    other = tmp_path / 'weights.safetensors'
    st_save_file({'w': torch.zeros(3)}, str(other))
    with pytest.raises(MemoryFileError, match='not a flash_vstream_ros memory file'):
        load_file(other)
    future = tmp_path / 'future.fvsm'
    info = json.dumps({'format_version': 99, 'memories': []})
    st_save_file({'w': torch.zeros(3)}, str(future), {'format': persistence.FORMAT, 'info': info})
    with pytest.raises(MemoryFileError, match='version 99'):
        load_file(future)
    with pytest.raises(MemoryFileError, match='does not exist'):
        load_file(tmp_path / 'missing.fvsm')
    with pytest.raises(MemoryFileError, match='folder'):
        load_file(tmp_path)


def test_save_refuses_to_overwrite_a_foreign_file(tmp_path: Path) -> None:
    target = tmp_path / 'important.bin'
    target.write_bytes(b'precious data')
    with pytest.raises(MemoryFileError, match='refusing to overwrite'):
        save_file(target, records(), {})
    assert target.read_bytes() == b'precious data'


def test_failed_rename_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / 'mem.fvsm'
    save_file(path, records(1), {'generation': 1})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError('disk full (simulated)')

    monkeypatch.setattr(persistence.os, 'replace', broken_replace)
    with pytest.raises(MemoryFileError, match='disk full'):
        save_file(path, records(2), {'generation': 2})
    monkeypatch.undo()
    assert load_file(path).info['generation'] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['mem.fvsm']  # temp file removed


SAVER = textwrap.dedent(
    """
    import sys, torch
    from flash_vstream_ros.io.persistence import MemoryRecord, save_file
    path = sys.argv[1]
    big = MemoryRecord('cam', {'x': torch.randn(4_000_000)}, {'g': 2})
    print('ready', flush=True)
    while True:
        save_file(path, [big], {'generation': 2})
    """
)


def test_old_file_survives_sigkill_mid_save(tmp_path: Path) -> None:
    path = tmp_path / 'mem.fvsm'
    save_file(path, records(1), {'generation': 1})
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    proc = subprocess.Popen(
        [sys.executable, '-c', SAVER, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == 'ready'
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:  # kill while a temp file is being written
            if any(p.name.endswith('.tmp') for p in tmp_path.iterdir()):
                break
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10.0)
    loaded = load_file(path)  # either the old file or a complete new one, never a torn one
    assert loaded.info['generation'] in (1, 2)


# ----------------------------------------------------------------- through the engine


def make_engine(tmp_path: Path, **flat: object) -> Engine:
    base: dict[str, object] = {'engine.ingest_rate_hz': 0.0, 'engine.frame_queue_size': 100}
    base.update(flat)
    return Engine(with_overrides(AppConfig(), base), FakeModel(), memory_factory=fake_build_memory)


def feed(eng: Engine, n: int, camera: str = 'cam', t0: float = 0.0) -> None:
    for i in range(n):
        eng.submit_frame(np.full((8, 8, 3), 10 * i % 256, np.uint8), to_ns(t0 + i), camera)
    assert eng.wait_idle(10.0)


def states(eng: Engine) -> dict[str, tuple[dict[str, torch.Tensor], dict[str, object]]]:
    return {key: snap.state() for key, snap in eng._current().snapshots}


def test_engine_save_load_reset(tmp_path: Path) -> None:
    path = str(tmp_path / 'mem.fvsm')
    eng = make_engine(tmp_path)
    eng.start()
    try:
        feed(eng, 9, 'left')
        feed(eng, 4, 'right')
        before = states(eng)
        info = eng.save_memory(path)
        assert info.frames == 13
        eng.reset_memory()
        assert eng.status().cameras == ()
        eng.load_memory(path)
        after = states(eng)
        ans = eng.ask(Question('q', cameras=('right',), max_new_tokens=1))
    finally:
        eng.stop()
    assert before.keys() == after.keys() == {'left', 'right'}
    for key in before:
        assert before[key][1] == after[key][1]
        for name, tensor in before[key][0].items():
            assert torch.equal(tensor, after[key][0][name])
    assert {e.camera for e in ans.evidence} == {'right'}


def test_engine_refuses_incompatible_and_keeps_memory(tmp_path: Path) -> None:
    shared = make_engine(tmp_path, **{'memory.per_camera': False})
    shared.start()
    feed(shared, 3)
    shared.save_memory(str(tmp_path / 'shared.fvsm'))
    shared.stop()
    eng = make_engine(tmp_path)
    eng.start()
    try:
        feed(eng, 5)
        with pytest.raises(MemoryFileError, match='incompatible: it holds per_camera=False'):
            eng.load_memory(str(tmp_path / 'shared.fvsm'))
        with pytest.raises(MemoryFileError, match=r'persistence\.path is empty'):
            eng.save_memory()
        assert eng.status().frames_ingested == 5
        assert eng.status().newest_stamp == to_ns(4.0)  # the current memory is untouched
    finally:
        eng.stop()


def test_restore_on_start_and_save_on_shutdown(tmp_path: Path) -> None:
    path = str(tmp_path / 'day.fvsm')
    flat = {'persistence.path': path, 'persistence.restore_on_start': True}
    first = make_engine(tmp_path, **flat)
    first.start()
    feed(first, 6)
    first.stop()  # save_on_shutdown defaults to True
    second = make_engine(tmp_path, **flat)
    second.start()
    try:
        st = second.status()
    finally:
        second.stop()
    assert (st.oldest_stamp, st.newest_stamp) == (0, to_ns(5.0))


def test_corrupt_file_at_start_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / 'day.fvsm'
    save_file(path, records(1), {'kind': 'star', 'per_camera': True, 'feature_dim': 8})
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    eng = make_engine(
        tmp_path, **{'persistence.path': str(path), 'persistence.restore_on_start': True}
    )
    eng.start()
    try:
        assert eng.status().cameras == ()
        aside = [p for p in tmp_path.iterdir() if '.bad-' in p.name]
        assert len(aside) == 1
        assert aside[0].read_bytes() == blob[: len(blob) // 2]  # kept for inspection
    finally:
        eng.stop()


def test_autosave(tmp_path: Path) -> None:
    path = tmp_path / 'auto.fvsm'
    eng = make_engine(
        tmp_path,
        **{
            'persistence.path': str(path),
            'persistence.autosave_period_s': 0.05,
            'persistence.save_on_shutdown': False,
        },
    )
    eng.start()
    try:
        feed(eng, 3)
        deadline = time.monotonic() + 10.0
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert load_file(path).info['frames'] == 3
    finally:
        eng.stop()
