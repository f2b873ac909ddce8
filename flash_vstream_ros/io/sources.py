"""Offline frame sources: video files, image folders and rosbag2 bags.

Every source yields ``(rgb, stamp, camera)``: an RGB uint8 ``(H, W, 3)`` array, an int ns stamp
in seconds and a camera name. Problems opening a source raise :class:`SourceError`; a single
undecodable bag message is reported through ``on_bad`` and skipped (a bag with one corrupt
JPEG is still worth replaying).

* Video (anything OpenCV reads): stamps from ``CAP_PROP_POS_MSEC``, falling back to
  ``index / fps`` when the container gives none; camera = the file's stem.
* Image folder: files sorted by name (png, jpg, jpeg, bmp, tif, tiff, webp), stamps
  ``index / fps``; camera = the folder's name. An undecodable file goes to ``on_bad`` and is
  skipped like a bad bag message (without ``on_bad`` it raises SourceError).
* A video file is checked first (io/video_file.py): empty, not a video (no known container
  signature) and truncated/unreadable are three different one-line SourceErrors.
* rosbag2 folder or file (MCAP or sqlite3, read with ``rosbags``): ``sensor_msgs/Image`` and
  ``sensor_msgs/CompressedImage`` topics, header stamps (the bag's receive time when a header
  stamp is zero); camera = the topic without its leading '/', other '/' replaced by '_'.
  Raw encodings: rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3, mono16, 16UC1 (row padding in
  ``step`` respected, ``is_bigendian`` honoured); compressed: whatever OpenCV decodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
import sys
from typing import Any

import numpy as np

from flash_vstream_ros.errors import BadFrameError, SourceError
from flash_vstream_ros.io.video_file import captured_stderr, check_video_file, unreadable
from flash_vstream_ros.stamps import from_sec_nanosec, to_ns

FrameItem = tuple[np.ndarray, int, str]  # (rgb (H, W, 3) uint8, stamp ns, camera)
BadCallback = Callable[[str], None]

IMAGE_SUFFIXES = frozenset({'.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp'})
VIDEO_SUFFIXES = frozenset({'.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v', '.mpg', '.mpeg'})
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')


@dataclass(frozen=True)
class Source:
    """An opened source: what it is, roughly how many frames, and its frames."""

    kind: str  # video | images | bag
    path: str
    frames: int | None  # expected frame count (None when unknown)
    cameras: tuple[str, ...]
    iterate: Callable[[], Iterator[FrameItem]]

    def __iter__(self) -> Iterator[FrameItem]:
        return self.iterate()


def open_source(
    path: str | Path,
    *,
    fps: float = 1.0,
    topics: Sequence[str] = (),
    on_bad: BadCallback | None = None,
) -> Source:
    """Open a video file, an image folder or a rosbag2 bag, deciding by what ``path`` is."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f'source {p} does not exist')
    if _is_bag(p):
        return open_bag(p, topics=topics, on_bad=on_bad)
    if p.is_dir():
        return open_image_folder(p, fps=fps, on_bad=on_bad)
    return open_video(p)


def _is_bag(p: Path) -> bool:
    if p.is_dir():
        return (p / 'metadata.yaml').exists() or any(
            f.suffix in ('.mcap', '.db3') for f in p.iterdir()
        )
    return p.suffix in ('.mcap', '.db3')


# ----------------------------------------------------------------- video


def open_video(path: str | Path, camera: str = '') -> Source:
    """A video file; refused up front when empty, not a video, or truncated (one clear line)."""
    import cv2

    p = Path(path)
    container = check_video_file(p)
    with captured_stderr() as ffmpeg_lines:
        cap = cv2.VideoCapture(str(p))
        opened = cap.isOpened()
    if not opened:
        raise unreadable(p, container, ffmpeg_lines)
    if ffmpeg_lines:  # a file that opens: FFmpeg's remarks still reach the user
        sys.stderr.write('\n'.join(ffmpeg_lines) + '\n')
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    name = camera or p.stem
    return Source(
        'video', str(p), count if count > 0 else None, (name,), lambda: _video_frames(p, name)
    )


def _video_frames(path: Path, camera: str) -> Iterator[FrameItem]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f'cannot open video {path}')
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    last = -1
    index = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            stamp = to_ns(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
            if stamp <= last:  # container without timestamps: fall back to the frame rate
                stamp = to_ns(index / fps if fps > 0 else float(index))
                stamp = max(stamp, last + 1_000)
            last = stamp
            index += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stamp, camera
    finally:
        cap.release()
    if index == 0:
        raise SourceError(f'video {path} has no decodable frames')


# ----------------------------------------------------------------- image folder


def open_image_folder(
    path: str | Path, fps: float = 1.0, camera: str = '', on_bad: BadCallback | None = None
) -> Source:
    """Image files by name; an undecodable one goes to ``on_bad`` and is skipped (as in bags)."""
    p = Path(path)
    if fps <= 0:
        raise SourceError(f'image folder fps must be > 0, got {fps}')
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f'image folder {p} has no images ({", ".join(sorted(IMAGE_SUFFIXES))})')
    name = camera or p.name
    return Source(
        'images', str(p), len(files), (name,), lambda: _folder_frames(files, fps, name, on_bad)
    )


def _folder_frames(
    files: list[Path], fps: float, camera: str, on_bad: BadCallback | None
) -> Iterator[FrameItem]:
    """Decoded files; a skipped file keeps its slot in time (stamp = index / fps)."""
    import cv2

    decoded = 0
    for i, f in enumerate(files):
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            if on_bad is None:
                raise SourceError(f'cannot decode image {f}')
            on_bad(f'cannot decode image {f}')
            continue
        decoded += 1
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), to_ns(i / fps), camera
    if decoded == 0:
        raise SourceError(f'image folder {files[0].parent} has no decodable image')


# ----------------------------------------------------------------- rosbag2


def topic_camera(topic: str) -> str:
    """'/front/image_raw' -> 'front_image_raw'."""
    return topic.strip('/').replace('/', '_')


def open_bag(
    path: str | Path, topics: Sequence[str] = (), on_bad: BadCallback | None = None
) -> Source:
    from rosbags.highlevel import AnyReader

    p = Path(path)
    try:
        with AnyReader([p]) as reader:
            available = {c.topic: c.msgtype for c in reader.connections}
            counts = {c.topic: c.msgcount for c in reader.connections}
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        raise SourceError(f'cannot open bag {p}: {exc}') from exc
    images = sorted(t for t, ty in available.items() if ty in IMAGE_TYPES)
    chosen = _choose_topics(p, topics, images, available)
    total = sum(counts[t] for t in chosen)
    cams = tuple(topic_camera(t) for t in chosen)
    return Source('bag', str(p), total, cams, lambda: _bag_frames(p, chosen, on_bad))


def _choose_topics(
    p: Path, topics: Sequence[str], images: list[str], available: dict[str, str]
) -> list[str]:
    if not images:
        raise SourceError(
            f'bag {p} has no sensor_msgs/Image or CompressedImage topic; '
            f'topics: {sorted(available)}'
        )
    if not topics:
        return images
    wanted = ['/' + t.lstrip('/') for t in topics]
    missing = [t for t in wanted if t not in images]
    if missing:
        raise SourceError(f'bag {p} has no image topic(s) {missing}; image topics: {images}')
    return wanted


def _bag_frames(p: Path, topics: list[str], on_bad: BadCallback | None) -> Iterator[FrameItem]:
    from rosbags.highlevel import AnyReader

    with AnyReader([p]) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        for conn, bag_ns, raw in reader.messages(connections=conns):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
                rgb = message_to_rgb(msg, conn.msgtype)
            except (BadFrameError, ValueError, KeyError, IndexError) as exc:
                if on_bad is None:
                    raise SourceError(
                        f'bad message on {conn.topic} at {bag_ns} ns: {exc}'
                    ) from exc
                on_bad(f'{conn.topic} at {bag_ns} ns: {exc}')
                continue
            yield rgb, _stamp(msg, bag_ns), topic_camera(conn.topic)


def _stamp(msg: Any, bag_ns: int) -> int:
    stamp = msg.header.stamp
    if stamp.sec == 0 and stamp.nanosec == 0:
        return int(bag_ns)
    return from_sec_nanosec(stamp.sec, stamp.nanosec)


def message_to_rgb(msg: Any, msgtype: str) -> np.ndarray:
    """A deserialised Image or CompressedImage as RGB uint8 (H, W, 3); BadFrameError if not."""
    if msgtype.endswith('CompressedImage'):
        return compressed_to_rgb(bytes(msg.data))
    return raw_to_rgb(
        msg.height,
        msg.width,
        msg.encoding,
        msg.step,
        bool(msg.is_bigendian),
        np.asarray(msg.data, dtype=np.uint8),
    )


_RAW = {  # encoding -> (channels, bytes per channel)
    'rgb8': (3, 1),
    'bgr8': (3, 1),
    '8UC3': (3, 1),
    'rgba8': (4, 1),
    'bgra8': (4, 1),
    'mono8': (1, 1),
    '8UC1': (1, 1),
    'mono16': (1, 2),
    '16UC1': (1, 2),
}


def raw_to_rgb(
    height: int, width: int, encoding: str, step: int, bigendian: bool, data: np.ndarray
) -> np.ndarray:
    """Raw sensor_msgs/Image fields to RGB uint8 (H, W, 3)."""
    if encoding not in _RAW:
        raise BadFrameError(f'unsupported image encoding {encoding!r}; supported: {sorted(_RAW)}')
    channels, depth = _RAW[encoding]
    row = width * channels * depth
    if height <= 0 or width <= 0:
        raise BadFrameError(f'image size {width}x{height} is empty')
    if step < row:
        raise BadFrameError(f'step {step} is smaller than width*bytes per pixel = {row}')
    if data.size < step * (height - 1) + row:
        raise BadFrameError(
            f'image data has {data.size} bytes; {width}x{height} {encoding} '
            f'with step {step} needs {step * (height - 1) + row}'
        )
    rows = np.lib.stride_tricks.as_strided(data, (height, row), (step, 1))  # (H, row)
    if depth == 2:
        dt = np.dtype('>u2' if bigendian else '<u2')
        pix = np.ascontiguousarray(rows).view(dt).reshape(height, width).astype(np.float32)
        scale = 255.0 / max(float(pix.max()), 1.0) if encoding == '16UC1' else 255.0 / 65535.0
        grey = np.clip(pix * scale, 0, 255).astype(np.uint8)  # (H, W)
        return np.repeat(grey[:, :, None], 3, axis=2)
    img = rows.reshape(height, width, channels)
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if encoding in ('bgr8', '8UC3', 'bgra8'):
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img[:, :, :3])


def compressed_to_rgb(data: bytes) -> np.ndarray:
    import cv2

    if not data:
        raise BadFrameError('compressed image has no data')
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadFrameError(f'compressed image of {len(data)} bytes cannot be decoded')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
