"""Reliability suite, quick parts: malformed images into the converter, memory file faults.

The suite itself is ``python -m reliability.run``; these tests run its quick parts at a small
size and hold the regressions it found (metadata corruption accepted, temporary files of
killed saves left behind).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import os
from pathlib import Path
import subprocess
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from flash_vstream_ros.config import AppConfig, with_overrides
from flash_vstream_ros.engine import Engine, Question
from flash_vstream_ros.errors import BadFrameError, BadQuestionError, MemoryFileError
from flash_vstream_ros.io import persistence
from flash_vstream_ros.memory.base import TimeWindow
from flash_vstream_ros.ros.images import ENCODINGS, image_to_rgb
from flash_vstream_ros.stamps import to_ns
from reliability import persistence_faults, saver

from _engine_fakes import FakeModel, fake_build_memory  # isort: skip

pytestmark = pytest.mark.unit

U32 = 2**32 - 1


@dataclass
class RawImage:
    """The fields of sensor_msgs/Image the converter reads (it reads by attribute only)."""

    encoding: str
    width: int
    height: int
    step: int
    is_bigendian: int
    data: bytes


def test_converter_fuzz_has_no_crash_hang_or_accepted_bad_input() -> None:
    pytest.importorskip('sensor_msgs.msg')  # the suite builds real messages
    from reliability import converter

    rows = converter.run(1500, 500, seed=1)
    for row in rows:
        assert row.ok(), row.problems
        assert row.tried > 0
        assert 0 < row.errors < row.tried  # both outcomes happen


@settings(max_examples=300, deadline=None)
@given(
    encoding=st.sampled_from([*ENCODINGS, '', 'unknown', '32FC1']),
    width=st.one_of(st.integers(0, 70), st.just(U32)),
    height=st.one_of(st.integers(0, 70), st.just(U32)),
    step=st.one_of(st.integers(0, 600), st.just(U32)),
    bigendian=st.integers(0, 255),
    data=st.binary(max_size=4096),
)
def test_any_image_fields_give_rgb_or_bad_frame_error(
    encoding: str, width: int, height: int, step: int, bigendian: int, data: bytes
) -> None:
    msg = RawImage(encoding, width, height, step, bigendian, data)
    try:
        out = image_to_rgb(msg)
    except BadFrameError as exc:
        reason = str(exc)
        out = None
    if out is None:
        assert reason  # refused with a reason that says why
        return
    assert out.dtype == np.uint8
    assert out.shape == (height, width, 3)


def test_kill_during_save_always_leaves_a_loadable_file(tmp_path: Path) -> None:
    row = persistence_faults.kill_during_save(tmp_path, kills=4, dim=64)
    assert row.ok(), row.problems
    assert row.kills == 4
    assert row.lost == 0


def test_random_corruption_is_refused_and_left_alone(tmp_path: Path) -> None:
    row = persistence_faults.corrupt_files(tmp_path, files=60)
    assert row.ok(), row.problems
    assert row.errors == row.tried == 60


def _saved(tmp_path: Path) -> Path:
    memory = saver.new_memory(32)
    saver.fold(memory, 12, 32, seed=0)
    path = tmp_path / 'memory.fvs'
    saver.save(memory, str(path))
    return path


@pytest.mark.parametrize(
    ('old', 'new'),
    [
        (b'\\"frames_seen\\": 12', b'\\"frames_seen\\": 13'),  # a frame count
        (b'[\\"cam\\"]', b'[\\"cbm\\"]'),  # a camera name
    ],
)
def test_changed_metadata_values_are_refused(tmp_path: Path, old: bytes, new: bytes) -> None:
    path = _saved(tmp_path)
    blob = path.read_bytes()
    assert blob.count(old) == 1
    path.write_bytes(blob.replace(old, new))  # still valid JSON and safetensors
    with pytest.raises(MemoryFileError, match='header checksum'):
        saver.restore(str(path), 32)


def test_temporary_files_of_dead_savers_are_removed(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    dead = subprocess.run(
        [sys.executable, '-c', 'import os; print(os.getpid())'],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f'.memory.fvs.{int(dead.stdout)}.abc123.tmp'
    live = tmp_path / f'.memory.fvs.{os.getppid()}.def456.tmp'  # our parent is alive
    other = tmp_path / '.other.fvs.1.x.tmp'
    for f in (stale, live, other):
        f.write_bytes(b'partial')
    memory = saver.restore(str(path), 32)
    saver.save(memory, str(path))
    assert not stale.exists()
    assert live.exists()
    assert other.exists()
    assert persistence.load_file(path).info['format_version'] == persistence.FORMAT_VERSION


@pytest.fixture(scope='module')
def fake_engine() -> Iterator[Engine]:
    cfg = with_overrides(AppConfig(), {'engine.ingest_rate_hz': 0.0})
    eng = Engine(cfg, FakeModel(), memory_factory=fake_build_memory)
    eng.start()
    for i in range(8):
        eng.submit_frame(np.full((12, 16, 3), i * 30, np.uint8), to_ns(100.0 + i), 'cam')
    assert eng.wait_idle(10.0)
    yield eng
    eng.stop()


FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
STAMPS = st.one_of(st.integers(-(2**70), 2**70), FLOATS)  # ns, out of int64 range, or floats


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=60),
    start=st.one_of(st.none(), STAMPS),
    end=st.one_of(st.none(), STAMPS),
    last_s=FLOATS,
    cameras=st.lists(st.sampled_from(['cam', 'other', '', 'ü']), max_size=3),
    max_new_tokens=st.integers(-5, 2**32),
    temperature=st.one_of(st.none(), FLOATS),
)
def test_any_question_is_answered_or_refused_with_a_reason(
    fake_engine: Engine,
    text: str,
    start: Any,
    end: Any,
    last_s: float,
    cameras: list[str],
    max_new_tokens: int,
    temperature: float | None,
) -> None:
    window = None if start is None and end is None else TimeWindow(start, end)
    question = Question(
        text=text,
        window=window,
        last_s=last_s,
        cameras=tuple(cameras),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
    )
    try:
        answer = fake_engine.ask(question)
    except BadQuestionError as exc:
        reason = str(exc)
        answer = None
    if answer is None:
        assert reason.strip()
        return
    assert answer.stop_reason in ('eos', 'length')
    assert fake_engine.status().state == 'running'
