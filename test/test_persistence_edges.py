"""Memory files at the edges: foreign headers, file modes kept, unwritable places."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from flash_vstream_ros.errors import MemoryFileError
from flash_vstream_ros.io import persistence
from flash_vstream_ros.io.persistence import MemoryRecord, save_file

pytestmark = pytest.mark.unit


def one_record() -> list[MemoryRecord]:
    return [MemoryRecord('cam', {'a': torch.ones(2, 3)}, {'frames': 1})]


@pytest.mark.parametrize(
    'content',
    [
        b'hello, this is a text file and not a memory at all\n' * 20,
        b'\x00\x00\x00\x00\x00\x00\x00\x00{}',  # a zero header length
        (40).to_bytes(8, 'little') + b'not json, but short enough to look plausible',
    ],
)
def test_foreign_bytes_are_named_not_a_memory_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / 'text.mp4'
    path.write_bytes(content)
    with pytest.raises(MemoryFileError) as info:
        persistence.read_info(path)
    message = str(info.value)
    assert 'is not a flash_vstream_ros memory file' in message
    assert message.count(str(path)) == 1, message  # said once, not wrapped twice
    assert '2338328219631577204' not in message  # the text read as a length


def test_check_header_returns_the_info(tmp_path: Path) -> None:
    path = tmp_path / 'mem.fvsm'
    save_file(path, one_record(), {'kind': 'fake', 'frames': 1})
    assert persistence.check_header(path)['frames'] == 1
    text = tmp_path / 'text.mp4'
    text.write_text('plain text ' * 100)
    with pytest.raises(MemoryFileError, match='not a flash_vstream_ros memory file'):
        persistence.check_header(text)


def test_saving_over_a_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / 'mem.fvsm'
    save_file(path, one_record(), {'kind': 'fake'})
    assert path.stat().st_mode & 0o777 == 0o600  # new files: owner only (documented)
    path.chmod(0o644)
    save_file(path, one_record(), {'kind': 'fake'})
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_below_a_file_names_path_and_reason(tmp_path: Path) -> None:
    parent = tmp_path / 'plain_file'
    parent.write_text('x')
    target = parent / 'mem.safetensors'
    with pytest.raises(MemoryFileError, match='not a folder') as info:
        save_file(target, one_record(), {})
    assert str(target) in str(info.value)


@pytest.mark.skipif(not Path('/proc/self').is_dir(), reason='needs /proc')
def test_save_into_proc_is_a_memory_file_error() -> None:
    target = Path('/proc/x.safetensors')
    with pytest.raises(MemoryFileError) as info:
        save_file(target, one_record(), {})
    assert str(target) in str(info.value)
    assert 'cannot save memory' in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes anywhere')
def test_save_into_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / 'ro'
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(MemoryFileError, match='Permission denied'):
            save_file(folder / 'mem.fvsm', one_record(), {})
    finally:
        folder.chmod(0o700)
