"""Replays of image folders with the tiny model: bad files skipped, stamps after a loaded memory,
and what the lines say (3-decimal spans, '1 frame')."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from flash_vstream_ros.cli import main
from flash_vstream_ros.cli.stamps import after_memory, first_period, format_stamp, replay_offset

pytestmark = pytest.mark.model


@pytest.fixture
def model_args(tiny_cache_dir: Path) -> list[str]:
    return [
        '--set',
        f'model.cache_dir={tiny_cache_dir}',
        '--set',
        'generation.max_new_tokens=4',
        '--set',
        'engine.ingest_rate_hz=0',
    ]


def shots(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f'{i:03d}.png'), np.full((16, 16, 3), 30 * i, np.uint8))
    return folder


def test_an_undecodable_image_is_skipped_and_counted(
    tmp_path: Path, model_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shots(tmp_path / 'cam', 4)
    (folder / '002.png').write_bytes(b'\x89PNG but cut short')
    rc = main(['replay', str(folder), *model_args])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert err.count('warning: skipped an unreadable frame: cannot decode image') == 1
    assert '002.png' in err
    assert 'skipped 1 unreadable frame\n' in err
    assert 'memory: 3 frames ingested' in err
    assert 'rejected 1' in err  # the engine counted it too


def test_replay_after_load_continues_the_stamps(
    tmp_path: Path, model_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shots(tmp_path / 'cam', 4)  # stamps 0, 1, 2, 3 at 1 fps
    first = tmp_path / 'first.fvsm'
    assert main(['replay', str(folder), *model_args, '--save', str(first)]) == 0
    _, err = capsys.readouterr()
    assert 'stamps 0.000..3.000 s' in err
    second = tmp_path / 'second.fvsm'
    rc = main(['replay', str(folder), *model_args, '--load', str(first), '--save', str(second)])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert 'loaded 4 frames from' in err
    assert 'replay stamps shifted by +4.000 s' in err
    assert 'saved 8 frames to' in err
    assert 'stamps 0.000..7.000 s' in err  # the second pass follows the first, one period on


def test_spans_have_three_decimals_and_one_frame_is_singular(
    tmp_path: Path, model_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shots(tmp_path / 'cam', 2)
    rc = main(['replay', str(folder), *model_args, '--fps', '3', '--limit', '2'])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert 'stamps 0.000..0.333 s' in err
    one = shots(tmp_path / 'one', 1)
    memfile = tmp_path / 'one.fvsm'
    rc = main(['replay', str(one), *model_args, '--save', str(memfile)])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert 'memory: 1 frame ingested' in err
    assert 'saved 1 frame to' in err
    assert 'replay 1/1 frame |' in err


@pytest.mark.unit
def test_replay_offset_rules() -> None:
    s = 10**9  # stamps are integer nanoseconds
    assert replay_offset(None, 0, s) == 0  # nothing loaded
    assert replay_offset(3 * s, 0, s) == 4 * s  # restarted at 0: follow, one period on
    assert replay_offset(3 * s, 3 * s, s // 2) == s // 2  # same first stamp as the newest
    assert replay_offset(3 * s, 10 * s, s) == 0  # already after the memory
    assert replay_offset(3 * s, 0, 10**8) == 31 * 10**8
    assert first_period([]) == s
    img = np.zeros((1, 1, 3), np.uint8)
    assert first_period([(img, 0, 'a'), (img, s // 10, 'b'), (img, s // 2, 'a')]) == s // 2
    assert format_stamp(3_803_800_000) == '3.804'
    assert format_stamp(None) == '?'


@pytest.mark.unit
def test_after_memory_shifts_every_frame_and_says_so() -> None:
    img = np.zeros((1, 1, 3), np.uint8)
    out = io.StringIO()
    q = 10**9 // 4
    frames = [(img, i * q, 'cam') for i in range(20)]  # more than the lookahead
    shifted = list(after_memory(frames, 2 * 10**9, out))
    assert [s for _, s, _ in shifted] == [9 * q + i * q for i in range(20)]
    assert 'shifted by +2.250 s' in out.getvalue()
    quiet = io.StringIO()
    assert [s for _, s, _ in after_memory(frames, None, quiet)] == [i * q for i in range(20)]
    assert quiet.getvalue() == ''
