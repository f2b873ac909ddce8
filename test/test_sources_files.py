"""Sources given bad files: an undecodable image in a folder, empty, text and truncated videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from flash_vstream_ros.errors import SourceError
from flash_vstream_ros.io.sources import open_source

pytestmark = pytest.mark.unit


def shots(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f'img_{i:03d}.png'), np.full((6, 9, 3), 20 * i, np.uint8))


def test_an_undecodable_image_is_skipped_and_reported(tmp_path: Path) -> None:
    folder = tmp_path / 'shots'
    shots(folder, 3)
    (folder / 'img_001.png').write_bytes(b'not a png at all')
    bad: list[str] = []
    frames = list(open_source(folder, fps=2.0, on_bad=bad.append))
    assert [s for _, s, _ in frames] == [0, 10**9]  # stamps (ns) keep the file's place
    assert len(bad) == 1
    assert 'img_001.png' in bad[0]


def test_an_undecodable_image_without_callback_raises(tmp_path: Path) -> None:
    folder = tmp_path / 'shots'
    shots(folder, 2)
    (folder / 'img_000.png').write_bytes(b'')
    with pytest.raises(SourceError, match='cannot decode image'):
        list(open_source(folder))


def test_a_folder_of_only_undecodable_images(tmp_path: Path) -> None:
    folder = tmp_path / 'shots'
    folder.mkdir()
    (folder / 'a.jpg').write_text('text')
    bad: list[str] = []
    with pytest.raises(SourceError, match='no decodable image'):
        list(open_source(folder, on_bad=bad.append))
    assert len(bad) == 1


def written_mp4(path: Path, frames: int = 20) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*'mp4v'), 10.0, (32, 24))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((24, 32, 3), 10 * i % 255, np.uint8))
    writer.release()
    return path.read_bytes()


@pytest.mark.parametrize(
    ('make', 'cause'),
    [
        (lambda good: b'', 'is empty (0 bytes)'),
        (lambda good: b'just some text, no video here\n' * 40, 'not a video'),
        (lambda good: good[: len(good) // 2], 'truncated or unreadable video'),
    ],
    ids=['empty', 'text', 'truncated'],
)
def test_bad_video_files_name_the_cause_in_one_line(
    tmp_path: Path, make: object, cause: str, capfd: pytest.CaptureFixture[str]
) -> None:
    good = written_mp4(tmp_path / 'good.mp4')
    bad = tmp_path / 'clip.mp4'
    bad.write_bytes(make(good))  # type: ignore[operator]
    capfd.readouterr()
    with pytest.raises(SourceError) as info:
        open_source(bad)
    message = str(info.value)
    assert cause in message
    assert str(bad) in message
    assert 'OpenCV has no reader' not in message
    _, err = capfd.readouterr()
    assert err == ''  # no FFmpeg line on the terminal before our message


def test_a_good_written_video_still_opens(tmp_path: Path) -> None:
    written_mp4(tmp_path / 'good.mp4')
    src = open_source(tmp_path / 'good.mp4')
    assert len(list(src)) == 20
