"""ROS image messages to RGB uint8 arrays, with strict validation.

``image_to_rgb(msg)`` takes a ``sensor_msgs/Image`` and ``compressed_to_rgb(msg)`` a
``sensor_msgs/CompressedImage``; both return a C-contiguous RGB ``uint8`` array of shape
``(H, W, 3)`` or raise :class:`BadFrameError` with a reason that quotes the bad field.

Supported raw encodings: rgb8, bgr8, rgba8, bgra8, mono8, 8UC1 (grey), 8UC3 (BGR, the OpenCV
order), 8UC4 (BGRA), rgb16, bgr16, rgba16, bgra16, mono16, 16UC1, the Bayer patterns (8 and 16
bit), yuv422/uyvy, and yuv422_yuy2/yuyv (nv12/nv21 are refused: their row count is not
agreed between ROS tools). Rows may be padded (``step`` larger than
``width * bytes_per_pixel``); 16-bit data honours ``is_bigendian``. 16-bit colour and mono16 are
scaled to 8 bit by 255/65535 (what cv_bridge does); 16UC1 (depth in millimetres, as depth cameras
publish it) is scaled by the frame's own maximum, so that near and far stay visible. Compressed
images: anything OpenCV decodes (jpeg, png, ...), and ``compressedDepth`` PNGs.

On a ROS distro where ``cv_bridge`` imports, the 8-bit colour and mono encodings go through it
after this module's validation; elsewhere (the pip wheels have no cv_bridge) the converter below
does the work. The messages are read by attribute only, so this module imports no ROS package.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
import os
from typing import Any, Protocol

import cv2
import numpy as np

from flash_vstream_ros.errors import BadFrameError
from flash_vstream_ros.io.image_header import declared_size

DEFAULT_MAX_SIDE = 8192
_COMPRESSED_DEPTH_HEADER = 12  # bytes of compressed_depth_image_transport's config header


class ImageMessage(Protocol):
    """The fields of sensor_msgs/Image this module reads."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: Any


class CompressedImageMessage(Protocol):
    """The fields of sensor_msgs/CompressedImage this module reads."""

    format: str
    data: Any


@dataclass(frozen=True)
class Layout:
    """How one encoding lays its pixels out, and how OpenCV turns it into RGB."""

    channels: int  # values per pixel in a row (2 for packed YUV 4:2:2)
    dtype: str  # 'uint8' or 'uint16'
    to_rgb: int | None  # cv2.COLOR_* code; None = already RGB

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * np.dtype(self.dtype).itemsize


ENCODINGS: dict[str, Layout] = {
    'rgb8': Layout(3, 'uint8', None),
    'bgr8': Layout(3, 'uint8', cv2.COLOR_BGR2RGB),
    'rgba8': Layout(4, 'uint8', cv2.COLOR_RGBA2RGB),
    'bgra8': Layout(4, 'uint8', cv2.COLOR_BGRA2RGB),
    'mono8': Layout(1, 'uint8', cv2.COLOR_GRAY2RGB),
    '8UC1': Layout(1, 'uint8', cv2.COLOR_GRAY2RGB),
    '8UC3': Layout(3, 'uint8', cv2.COLOR_BGR2RGB),
    '8UC4': Layout(4, 'uint8', cv2.COLOR_BGRA2RGB),
    'rgb16': Layout(3, 'uint16', None),
    'bgr16': Layout(3, 'uint16', cv2.COLOR_BGR2RGB),
    'rgba16': Layout(4, 'uint16', cv2.COLOR_RGBA2RGB),
    'bgra16': Layout(4, 'uint16', cv2.COLOR_BGRA2RGB),
    'mono16': Layout(1, 'uint16', cv2.COLOR_GRAY2RGB),
    '16UC1': Layout(1, 'uint16', cv2.COLOR_GRAY2RGB),
    # OpenCV names a Bayer pattern by its second row and column: ROS rggb is OpenCV BG.
    'bayer_rggb8': Layout(1, 'uint8', cv2.COLOR_BayerBG2RGB),
    'bayer_bggr8': Layout(1, 'uint8', cv2.COLOR_BayerRG2RGB),
    'bayer_gbrg8': Layout(1, 'uint8', cv2.COLOR_BayerGR2RGB),
    'bayer_grbg8': Layout(1, 'uint8', cv2.COLOR_BayerGB2RGB),
    'bayer_rggb16': Layout(1, 'uint16', cv2.COLOR_BayerBG2RGB),
    'bayer_bggr16': Layout(1, 'uint16', cv2.COLOR_BayerRG2RGB),
    'bayer_gbrg16': Layout(1, 'uint16', cv2.COLOR_BayerGR2RGB),
    'bayer_grbg16': Layout(1, 'uint16', cv2.COLOR_BayerGB2RGB),
    'yuv422': Layout(2, 'uint8', cv2.COLOR_YUV2RGB_UYVY),
    'uyvy': Layout(2, 'uint8', cv2.COLOR_YUV2RGB_UYVY),
    'yuv422_yuy2': Layout(2, 'uint8', cv2.COLOR_YUV2RGB_YUYV),
    'yuyv': Layout(2, 'uint8', cv2.COLOR_YUV2RGB_YUYV),
}

# Encodings handed to ROS cv_bridge when it imports (after validation here).
BRIDGE_ENCODINGS = frozenset({'rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8'})
_EVEN_WIDTH = frozenset({'yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'})


def supported_encodings() -> tuple[str, ...]:
    """Every raw encoding :func:`image_to_rgb` accepts."""
    return tuple(ENCODINGS)


def image_to_rgb(
    msg: ImageMessage, max_side: int = DEFAULT_MAX_SIDE, use_bridge: bool = True
) -> np.ndarray:
    """A sensor_msgs/Image as RGB uint8 (H, W, 3); raises BadFrameError when malformed."""
    encoding = str(msg.encoding)
    layout = check_image(msg, max_side)
    bridge = _cv_bridge() if use_bridge and encoding in BRIDGE_ENCODINGS else None
    if bridge is not None:
        return _bridge_to_rgb(bridge, msg)
    return raw_to_rgb(
        encoding,
        layout,
        int(msg.height),
        int(msg.width),
        int(msg.step),
        bool(msg.is_bigendian),
        msg.data,
    )


def check_image(msg: ImageMessage, max_side: int = DEFAULT_MAX_SIDE) -> Layout:
    """Validate an Image's fields against each other; returns its layout."""
    encoding = str(msg.encoding)
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise BadFrameError(
            f'unsupported image encoding {encoding!r}; supported: {", ".join(ENCODINGS)}'
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    _check_size(width, height, max_side)
    if encoding in _EVEN_WIDTH and width % 2:
        raise BadFrameError(f'{encoding} image width must be even, got {width}')
    row = width * layout.bytes_per_pixel
    if step < row:
        raise BadFrameError(
            f'image step {step} is smaller than width {width} x '
            f'{layout.bytes_per_pixel} bytes per pixel ({row}) for {encoding}'
        )
    if layout.dtype == 'uint16' and step % 2:
        raise BadFrameError(f'image step {step} is odd for 16-bit encoding {encoding}')
    needed = step * height
    size = len(msg.data)
    if size < needed:
        raise BadFrameError(
            f'image data has {size} bytes, {needed} expected for '
            f'{height} rows of step {step} ({encoding})'
        )
    return layout


def _check_size(width: int, height: int, max_side: int) -> None:
    if width <= 0 or height <= 0:
        raise BadFrameError(f'image size {width}x{height} is empty')
    if width > max_side or height > max_side:
        raise BadFrameError(
            f'image size {width}x{height} exceeds engine.max_image_side ({max_side})'
        )


def raw_to_rgb(
    encoding: str, layout: Layout, height: int, width: int, step: int, bigendian: bool, data: Any
) -> np.ndarray:
    """The converter used without cv_bridge: validated fields to RGB uint8 (H, W, 3)."""
    buf = np.frombuffer(data, dtype=np.uint8, count=step * height)
    packed = buf.reshape(height, step)[:, : width * layout.bytes_per_pixel]  # (H, W*bpp)
    pixels = np.ascontiguousarray(packed).view(_dtype(layout.dtype, bigendian))
    pixels = pixels.astype(layout.dtype, copy=False)  # native byte order for OpenCV
    pixels = pixels.reshape(height, width, layout.channels)  # (H, W, C)
    if layout.channels == 1:
        pixels = pixels[:, :, 0]
    if layout.to_rgb is not None:
        pixels = cv2.cvtColor(pixels, layout.to_rgb)
    if layout.dtype == 'uint16':
        pixels = _to_8bit(pixels, per_frame_max=encoding == '16UC1')
    return np.ascontiguousarray(pixels, dtype=np.uint8)  # (H, W, 3)


def _dtype(name: str, bigendian: bool) -> np.dtype[Any]:
    dtype = np.dtype(name)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder('>' if bigendian else '<')
    return dtype


def _to_8bit(pixels: np.ndarray, per_frame_max: bool) -> np.ndarray:
    values = pixels.astype(np.float32)
    top = float(values.max()) if per_frame_max else 65535.0
    if top <= 0.0:
        return np.zeros(pixels.shape, np.uint8)
    return np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


def compressed_to_rgb(msg: CompressedImageMessage, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """A sensor_msgs/CompressedImage as RGB uint8 (H, W, 3); raises BadFrameError."""
    fmt = str(msg.format)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise BadFrameError(f'compressed image ({fmt!r}) has no data')
    if 'compresseddepth' in fmt.lower().replace('_', ''):
        return _decode_depth(data, fmt, max_side)
    check_declared_size(data, max_side)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)  # (H, W, 3) BGR, 8 bit
    if image is None:
        raise BadFrameError(f'compressed image ({fmt!r}, {data.size} bytes) cannot be decoded')
    _check_size(image.shape[1], image.shape[0], max_side)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_declared_size(data: np.ndarray, max_side: int) -> None:
    """Refuse a PNG/JPEG whose header declares too many pixels, before decoding it."""
    size = declared_size(data.data)
    if size is None:
        return  # not PNG/JPEG or no header: the decoder judges it, its size is checked after
    width, height = size
    if height == 0 and width > 0:  # JPEG height set later by a DNL marker
        height = 1
    _check_size(width, height, max_side)


def _decode_depth(data: np.ndarray, fmt: str, max_side: int) -> np.ndarray:
    check_declared_size(data[_COMPRESSED_DEPTH_HEADER:], max_side)
    depth = cv2.imdecode(data[_COMPRESSED_DEPTH_HEADER:], cv2.IMREAD_UNCHANGED)
    if depth is None or depth.ndim != 2:
        raise BadFrameError(
            f'compressed depth image ({fmt!r}, {data.size} bytes) cannot be decoded'
        )
    _check_size(depth.shape[1], depth.shape[0], max_side)
    if depth.dtype != np.uint16:
        raise BadFrameError(f'compressed depth image ({fmt!r}) holds {depth.dtype}, not 16-bit')
    return _to_8bit(cv2.cvtColor(depth, cv2.COLOR_GRAY2RGB), per_frame_max=True)


@functools.cache
def _cv_bridge() -> Any | None:
    """ROS cv_bridge's CvBridge when it imports (a ROS distro), else None."""
    if not os.environ.get('ROS_DISTRO'):  # not a ROS distro: PyPI 'cv-bridge' is a broken port
        return None
    try:
        from cv_bridge import CvBridge
    except ImportError:
        return None
    return CvBridge()


def _bridge_to_rgb(bridge: Any, msg: ImageMessage) -> np.ndarray:
    try:
        image = bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8')
    except Exception as exc:  # cv_bridge raises CvBridgeError or cv2.error
        raise BadFrameError(f'cv_bridge cannot convert {msg.encoding!r}: {exc}') from exc
    return np.ascontiguousarray(image, dtype=np.uint8)
