"""The CLI refuses bad arguments and files BEFORE it loads a model or replays anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from flash_vstream_ros.cli import main
from flash_vstream_ros.engine import Engine

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building an engine here means the check came too late (after a model load, a replay)."""

    def refuse(self: Engine, *args: Any, **kwargs: Any) -> None:
        raise AssertionError('the engine was built before the arguments were checked')

    monkeypatch.setattr(Engine, '__init__', refuse)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shots = tmp_path / 'shots'
    shots.mkdir()
    for i in range(2):
        cv2.imwrite(str(shots / f'{i}.png'), np.full((8, 8, 3), 40 * i, np.uint8))
    return shots


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / 'text.mp4'
    path.write_text('this is a text file that pretends to be a video\n' * 50)
    return path


def one_error_line(capsys: pytest.CaptureFixture[str], rc: int) -> str:
    _, err = capsys.readouterr()
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('flash-vstream: error: ')
    return lines[0]


def test_save_into_a_missing_folder(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / 'no' / 'such' / 'mem.fvsm'
    line = one_error_line(capsys, main(['replay', str(folder), '--save', str(target)]))
    assert 'does not exist' in line
    assert str(target.parent) in line


def test_save_over_a_foreign_file(
    folder: Path, text_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error_line(capsys, main(['replay', str(folder), '--save', str(text_file)]))
    assert 'refusing to overwrite' in line


@pytest.mark.parametrize('command', ['replay', 'ask'])
def test_reversed_window(
    command: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = (
        ['replay', str(folder)]
        if command == 'replay'
        else ['ask', '--load', str(tmp_path / 'mem.fvsm')]
    )
    line = one_error_line(capsys, main([*argv, '--ask', 'what?', '--window', '5', '1']))
    assert 'window is reversed' in line


@pytest.mark.parametrize('text', ['', '   ', '\t\n'])
def test_blank_question(text: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(capsys, main(['replay', str(folder), '--ask', 'fine?', '--ask', text]))
    assert 'question is empty' in line


def test_blank_positional_question(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(capsys, main(['ask', '--load', str(tmp_path / 'mem.fvsm'), ' ']))
    assert 'question is empty' in line


@pytest.mark.parametrize('command', ['ask', 'replay'])
def test_load_of_a_file_that_is_not_a_memory(
    command: str, folder: Path, text_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ['ask', 'what?'] if command == 'ask' else ['replay', str(folder)]
    line = one_error_line(capsys, main([*argv, '--load', str(text_file)]))
    assert 'is not a flash_vstream_ros memory file' in line


def test_load_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(capsys, main(['ask', '--load', str(tmp_path / 'gone.fvsm'), 'q?']))
    assert 'does not exist' in line


def test_info_of_a_text_file(text_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(capsys, main(['info', str(text_file)]))
    assert 'is not a flash_vstream_ros memory file' in line
    assert 'implausible header length' in line
