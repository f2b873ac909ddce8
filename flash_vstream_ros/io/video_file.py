"""Checks of a video file before OpenCV sees it: empty, not a video, truncated.

Why: OpenCV answers all three with the same ``isOpened() == False``, after FFmpeg has printed
a line of its own (``moov atom not found``) on the terminal. Reading the first bytes tells an
empty file and a file of no known container (text, a memory file) apart without any decoder;
what is left (a known container OpenCV still cannot open) is a truncated or damaged video, and
FFmpeg's own line, caught while OpenCV opens the file, becomes the reason in our one message.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import os
from pathlib import Path
import re
import sys
import tempfile

from flash_vstream_ros.errors import SourceError

_BMFF_BOXES = frozenset({b'ftyp', b'moov', b'mdat', b'free', b'wide', b'skip', b'pnot'})
_PREFIXES = (  # (magic at offset 0, container)
    (b'\x1a\x45\xdf\xa3', 'Matroska/WebM'),
    (b'\x00\x00\x01\xba', 'MPEG program stream'),
    (b'\x00\x00\x01\xb3', 'MPEG video'),
    (b'FLV', 'FLV'),
    (b'OggS', 'Ogg'),
    (b'\x30\x26\xb2\x75\x8e\x66\xcf\x11', 'ASF/WMV'),
    (b'GIF8', 'GIF'),
    (b'\x89PNG', 'PNG image'),
    (b'\xff\xd8\xff', 'JPEG image'),
)
MPEG_TS_PACKET = 188
_OPENCV_PREFIX = re.compile(r'^\[[A-Z]+:[^\]]*\]\s+global\s+\S+\s+\S+\s+')


def container_of(head: bytes) -> str | None:
    """The container the first bytes of a file announce, or None when none is known."""
    if len(head) >= 8 and head[4:8] in _BMFF_BOXES:
        return 'MP4/QuickTime'
    if head[:4] == b'RIFF' and head[8:12] == b'AVI ':
        return 'AVI'
    if head[:1] == b'\x47' and head[MPEG_TS_PACKET : MPEG_TS_PACKET + 1] in (b'\x47', b''):
        return 'MPEG transport stream'
    for magic, name in _PREFIXES:
        if head.startswith(magic):
            return name
    return None


def check_video_file(path: Path) -> str:
    """The file's container; SourceError naming an empty file or one that is not a video."""
    try:
        size = path.stat().st_size
        with path.open('rb') as f:
            head = f.read(MPEG_TS_PACKET + 1)
    except OSError as exc:
        raise SourceError(f'cannot open video {path}: {exc.strerror or exc}') from exc
    if size == 0:
        raise SourceError(f'cannot open video {path}: the file is empty (0 bytes)')
    container = container_of(head)
    if container is None:
        raise SourceError(
            f'cannot open video {path}: not a video (no known container signature; '
            f'it starts with {head[:8]!r})'
        )
    return container


def unreadable(path: Path, container: str, ffmpeg_lines: list[str]) -> SourceError:
    """The error for a known container OpenCV cannot open, with FFmpeg's reason when given."""
    said = [_bare(line) for line in ffmpeg_lines if line.strip()]
    reason = f' (FFmpeg: {said[0][:200]})' if said else ''
    return SourceError(
        f'cannot open video {path}: truncated or unreadable video ({container} header){reason}'
    )


def _bare(line: str) -> str:
    """A log line without OpenCV's '[ERROR:0@0.1] global cap_ffmpeg_impl.hpp:1412 open ' prefix."""
    return _OPENCV_PREFIX.sub('', line.strip())


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Catch what native code (FFmpeg) writes to file descriptor 2; the lines land in the list.

    Only for a short call made before any worker thread runs (a source opening), since every
    thread's stderr is caught meanwhile.
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode(errors='replace').splitlines())
