"""Image messages to RGB: every encoding, row padding, byte order, bad input, compressed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import pytest

from flash_vstream_ros.errors import BadFrameError
from flash_vstream_ros.ros import images
from flash_vstream_ros.ros.images import compressed_to_rgb, image_to_rgb

pytestmark = pytest.mark.unit

H, W = 6, 8
RNG = np.random.default_rng(7)
REF = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)  # (H, W, 3) RGB
GREY16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)  # (H, W)


@dataclass
class FakeImage:
    """The fields of sensor_msgs/Image, without ROS."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes
    is_bigendian: int = 0
    header: object = None


@dataclass
class FakeCompressed:
    format: str
    data: bytes = field(default=b'')


def pixels_for(encoding: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixel array in ``encoding``, expected RGB or None when checked another way)."""
    grey = REF[:, :, 1]
    alpha = np.full((H, W, 1), 200, np.uint8)
    table: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        'rgb8': (REF, REF),
        'bgr8': (REF[:, :, ::-1], REF),
        '8UC3': (REF[:, :, ::-1], REF),
        'rgba8': (np.concatenate([REF, alpha], 2), REF),
        'bgra8': (np.concatenate([REF[:, :, ::-1], alpha], 2), REF),
        '8UC4': (np.concatenate([REF[:, :, ::-1], alpha], 2), REF),
        'mono8': (grey, np.repeat(grey[:, :, None], 3, 2)),
        '8UC1': (grey, np.repeat(grey[:, :, None], 3, 2)),
        'rgb16': (REF.astype(np.uint16) * 257, REF),
        'bgr16': (REF[:, :, ::-1].astype(np.uint16) * 257, REF),
        'rgba16': (np.concatenate([REF, alpha], 2).astype(np.uint16) * 257, REF),
        'bgra16': (np.concatenate([REF[:, :, ::-1], alpha], 2).astype(np.uint16) * 257, REF),
        'mono16': (GREY16, _scaled(GREY16, 65535.0)),
        '16UC1': (GREY16, _scaled(GREY16, float(GREY16.max()))),
    }
    if encoding in table:
        return table[encoding]
    if encoding.startswith('bayer_'):
        bits = np.uint16 if encoding.endswith('16') else np.uint8
        return (GREY16 if bits == np.uint16 else grey), None
    return RNG.integers(0, 256, (H, W, 2), dtype=np.uint8), None  # packed YUV 4:2:2


def _scaled(values: np.ndarray, top: float) -> np.ndarray:
    out = np.clip(values.astype(np.float32) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(out[:, :, None], 3, 2)


def make_msg(
    encoding: str, pixels: np.ndarray, pad: int = 0, bigendian: bool = False, fill: int = 0xAB
) -> FakeImage:
    """Serialise ``pixels`` row by row with ``pad`` garbage bytes after every row."""
    arr = pixels.astype(pixels.dtype.newbyteorder('>' if bigendian else '<'))
    rows = arr.reshape(arr.shape[0], -1).view(np.uint8)  # (rows, W*bpp)
    padding = np.full((rows.shape[0], pad), fill, np.uint8)
    data = np.concatenate([rows, padding], 1)
    return FakeImage(
        height=H,
        width=W,
        encoding=encoding,
        step=data.shape[1],
        data=data.tobytes(),
        is_bigendian=int(bigendian),
    )


ALL = images.supported_encodings()
SIXTEEN = [e for e in ALL if images.ENCODINGS[e].dtype == 'uint16']


@pytest.mark.parametrize('encoding', ALL)
def test_every_encoding_gives_rgb_uint8(encoding: str) -> None:
    pixels, expected = pixels_for(encoding)
    out = image_to_rgb(make_msg(encoding, pixels))
    assert out.shape == (H, W, 3)
    assert out.dtype == np.uint8
    assert out.flags['C_CONTIGUOUS']
    if expected is not None:
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('encoding', ALL)
@pytest.mark.parametrize('pad', [2, 6, 64])
def test_row_padding_is_skipped(encoding: str, pad: int) -> None:
    pixels, _ = pixels_for(encoding)
    plain = image_to_rgb(make_msg(encoding, pixels))
    padded = image_to_rgb(make_msg(encoding, pixels, pad=pad))
    np.testing.assert_array_equal(padded, plain)


@pytest.mark.parametrize('encoding', SIXTEEN)
def test_big_endian_16_bit_equals_little_endian(encoding: str) -> None:
    pixels, _ = pixels_for(encoding)
    little = image_to_rgb(make_msg(encoding, pixels))
    big = image_to_rgb(make_msg(encoding, pixels, bigendian=True, pad=4))
    np.testing.assert_array_equal(big, little)


def test_grey_yuv_gives_grey_rgb() -> None:
    uyvy = np.full((H, W, 2), 128, np.uint8)
    uyvy[:, :, 1] = 90  # Y; U = V = 128 (no colour)
    out = image_to_rgb(make_msg('uyvy', uyvy))
    assert np.abs(out.astype(int) - out[0, 0, 0]).max() == 0
    assert abs(int(out[0, 0, 0]) - 90) <= 20


# Encodings rosbags-image converts to rgb8 (it ignores row padding, so unpadded here).
ROSBAGS = [e for e in ALL if not e.startswith(('8UC', '16UC'))]


@pytest.mark.parametrize('encoding', ROSBAGS)
def test_agrees_with_rosbags_image(encoding: str) -> None:
    rosbags_image = pytest.importorskip('rosbags.image')
    pixels, _ = pixels_for(encoding)
    msg = make_msg(encoding, pixels)
    theirs = rosbags_image.image_to_cvimage(msg, 'rgb8')
    ours = image_to_rgb(msg)
    # rosbags truncates when scaling 16 bit to 8 bit; this module rounds.
    tolerance = 1 if encoding in SIXTEEN else 0
    np.testing.assert_allclose(ours.astype(int), theirs.astype(int), atol=tolerance)


def good(encoding: str = 'rgb8') -> FakeImage:
    return make_msg(encoding, pixels_for(encoding)[0])


@pytest.mark.parametrize(
    ('msg', 'reason'),
    [
        (replace(good(), encoding='rgb9'), "unsupported image encoding 'rgb9'"),
        (replace(good(), encoding=''), "unsupported image encoding ''"),
        (replace(good(), width=0), 'is empty'),
        (replace(good(), height=0), 'is empty'),
        (replace(good(), width=100_000, step=300_000), 'exceeds engine.max_image_side'),
        (replace(good(), height=9000), 'exceeds engine.max_image_side'),
        (replace(good(), step=W * 3 - 1), 'step 23 is smaller than width 8'),
        (replace(good(), step=0), 'step 0 is smaller'),
        (replace(good(), data=good().data[:-1]), 'image data has 143 bytes, 144 expected'),
        (replace(good(), data=b''), 'image data has 0 bytes'),
        (replace(good(), width=W + 1), 'smaller than width 9'),
        (replace(good(), height=H + 1), '144 bytes, 168 expected'),
        (replace(good('yuyv'), width=W - 1, step=W * 2), 'width must be even'),
        (replace(good(), encoding='nv12'), "unsupported image encoding 'nv12'"),
        (
            replace(good('mono16'), step=W * 2 + 1, data=b'\0' * ((W * 2 + 1) * H)),
            'step 17 is odd',
        ),
    ],
)
def test_malformed_images_are_refused_with_a_reason(msg: FakeImage, reason: str) -> None:
    with pytest.raises(BadFrameError, match=reason):
        image_to_rgb(msg, max_side=8192)


def test_max_side_is_configurable() -> None:
    image_to_rgb(good(), max_side=W)
    with pytest.raises(BadFrameError, match=r'8x6 exceeds engine.max_image_side \(7\)'):
        image_to_rgb(good(), max_side=7)


def test_longer_data_than_needed_is_accepted() -> None:
    msg = replace(good(), data=good().data + b'\0' * 10)
    np.testing.assert_array_equal(image_to_rgb(msg), REF)


def encode(ext: str, rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def test_png_round_trip_is_exact() -> None:
    out = compressed_to_rgb(FakeCompressed('png', encode('.png', REF)))
    np.testing.assert_array_equal(out, REF)


def test_jpeg_round_trip_is_close() -> None:
    smooth = np.zeros((48, 64, 3), np.uint8)
    smooth[:, :, 0] = 200  # red
    smooth[:, :, 2] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
    out = compressed_to_rgb(FakeCompressed('rgb8; jpeg compressed bgr8', encode('.jpg', smooth)))
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - smooth.astype(int)).mean() < 4


def test_compressed_depth_png_is_decoded() -> None:
    ok, buf = cv2.imencode('.png', GREY16)
    assert ok
    data = b'\0' * 12 + buf.tobytes()
    out = compressed_to_rgb(FakeCompressed('16UC1; compressedDepth png', data))
    np.testing.assert_array_equal(out, _scaled(GREY16, float(GREY16.max())))


@pytest.mark.parametrize(
    ('data', 'reason'),
    [
        (b'', 'has no data'),
        (b'\xff\xd8\xff\xe0' + b'\x00' * 40, 'cannot be decoded'),
        (RNG.integers(0, 256, 500, dtype=np.uint8).tobytes(), 'cannot be decoded'),
        (encode('.jpg', REF)[:20], 'cannot be decoded'),
    ],
)
def test_corrupt_compressed_images_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(BadFrameError, match=reason):
        compressed_to_rgb(FakeCompressed('jpeg', data))


def test_compressed_image_too_large_is_refused() -> None:
    with pytest.raises(BadFrameError, match=r'exceeds engine\.max_image_side'):
        compressed_to_rgb(FakeCompressed('png', encode('.png', REF)), max_side=4)


def test_real_ros_messages_convert() -> None:
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')
    msg = sensor_msgs.Image(height=H, width=W, encoding='bgr8', step=W * 3 + 8)
    msg.data = make_msg('bgr8', REF[:, :, ::-1], pad=8).data
    np.testing.assert_array_equal(image_to_rgb(msg), REF)
    comp = sensor_msgs.CompressedImage(format='png')
    comp.data = encode('.png', REF)
    np.testing.assert_array_equal(compressed_to_rgb(comp), REF)


def _png_declaring(width: int, height: int) -> bytes:
    """A real PNG whose IHDR is rewritten to declare width x height (CRC fixed up)."""
    import zlib

    data = bytearray(encode('.png', REF))
    data[16:24] = width.to_bytes(4, 'big') + height.to_bytes(4, 'big')
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, 'big')
    return bytes(data)


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 marker is rewritten to declare width x height."""
    data = bytearray(encode('.jpg', REF))
    sof = data.index(b'\xff\xc0')
    data[sof + 5 : sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError('the image was decoded before its declared size was checked')

    monkeypatch.setattr(images.cv2, 'imdecode', refuse)


@pytest.mark.parametrize('craft', [_png_declaring, _jpeg_declaring])
def test_huge_declared_size_is_refused_before_decoding(
    craft: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = craft(20000, 20000)  # type: ignore[operator]
    _no_decoding(monkeypatch)
    with pytest.raises(BadFrameError, match=r'20000x20000 exceeds engine\.max_image_side'):
        compressed_to_rgb(FakeCompressed('png', data))


def test_huge_declared_compressed_depth_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = b'\0' * 12 + _png_declaring(20000, 20000)
    _no_decoding(monkeypatch)
    with pytest.raises(BadFrameError, match='exceeds'):
        compressed_to_rgb(FakeCompressed('16UC1; compressedDepth png', data))


def test_declared_size_reads_png_and_jpeg_headers() -> None:
    from flash_vstream_ros.io.image_header import declared_size

    assert declared_size(encode('.png', REF)) == (W, H)
    assert declared_size(encode('.jpg', REF)) == (W, H)
    assert declared_size(_jpeg_declaring(300, 200)) == (300, 200)
    assert declared_size(b'GIF89a') is None
    assert declared_size(encode('.png', REF)[:20]) is None
    assert declared_size(b'\xff\xd8\xff\xe0\x00') is None
