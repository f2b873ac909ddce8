"""Generated malformed (and a few valid) camera messages, each with what must happen to it.

``image_cases(rng, n)`` and ``compressed_cases(rng, n)`` yield :class:`Case` objects holding a
real ``sensor_msgs`` message. ``expect`` is ``'bad'`` when the message is malformed by
construction (the converter must raise BadFrameError), ``'ok'`` when it is valid by
construction (the converter must return the declared size) and ``'any'`` for pure fuzz (either,
but never another exception and never a wrong shape).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
import zlib

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from flash_vstream_ros.ros.images import ENCODINGS

U32_MAX = 2**32 - 1
MAX_SIDE = 8192  # engine.max_image_side default
HUGE_SIDE = 20000  # 20000 x 20000 x 3 = 1.2 GB if it were decoded
# Said only by the check of the declared size: a decoder given a small file that declares a
# huge size fails with 'cannot be decoded' (after allocating), never with this.
DECLARED_TOO_BIG = f'{HUGE_SIDE}x{HUGE_SIDE} exceeds engine.max_image_side'
BAD_ENCODINGS = ('', 'unknown', 'RGB8', 'rgb8 ', '32FC1', '64FC3', 'nv12', 'jpeg', 'rgb8\n')
Mutation = Callable[[Image, np.random.Generator], str]


@dataclass(frozen=True)
class Case:
    """One message to convert: what was done to it, and the outcome it must have."""

    kind: str  # e.g. 'image/step-short', 'compressed/truncated-jpeg'
    msg: Any
    expect: str  # 'bad', 'ok' or 'any'
    must_say: str = ''  # a rejection's reason must hold this (who refused it, and why)


def valid_image(rng: np.random.Generator, encoding: str | None = None) -> Image:
    """A small valid Image of a random supported encoding, maybe with padded rows."""
    enc = encoding or str(rng.choice(list(ENCODINGS)))
    layout = ENCODINGS[enc]
    width = int(rng.integers(1, 48)) * 2  # even: packed YUV needs it
    height = int(rng.integers(1, 48))
    pad = int(rng.choice([0, 0, 2, 8]))
    step = width * layout.bytes_per_pixel + pad
    msg = Image(height=height, width=width, encoding=enc, step=step)
    msg.is_bigendian = int(rng.integers(0, 2)) if layout.dtype == 'uint16' else 0
    msg.data = rng.integers(0, 256, step * height, dtype=np.uint8).tobytes()
    return msg


def _bpp(msg: Image) -> int:
    return ENCODINGS[msg.encoding].bytes_per_pixel


def _encoding(msg: Image, rng: np.random.Generator) -> str:
    msg.encoding = str(rng.choice(BAD_ENCODINGS))
    return 'encoding-unknown'


def _zero_width(msg: Image, rng: np.random.Generator) -> str:
    msg.width = 0
    return 'width-zero'


def _zero_height(msg: Image, rng: np.random.Generator) -> str:
    msg.height = 0
    return 'height-zero'


def _wide(msg: Image, rng: np.random.Generator) -> str:
    msg.width = msg.step // _bpp(msg) + int(rng.integers(1, 4))  # rows no longer fit in step
    return 'width-over-step'


def _tall(msg: Image, rng: np.random.Generator) -> str:
    msg.height += int(rng.integers(1, 4))  # data too short for the rows
    return 'height-over-data'


def _huge_width(msg: Image, rng: np.random.Generator) -> str:
    msg.width = int(rng.choice([MAX_SIDE + 2, 2**20, U32_MAX - 1]))
    return 'width-huge'


def _huge_height(msg: Image, rng: np.random.Generator) -> str:
    msg.height = int(rng.choice([MAX_SIDE + 1, 2**20, U32_MAX]))
    return 'height-huge'


def _step_short(msg: Image, rng: np.random.Generator) -> str:
    msg.step = int(rng.integers(0, msg.width * _bpp(msg)))
    return 'step-short'


def _step_long(msg: Image, rng: np.random.Generator) -> str:
    msg.step = int(rng.choice([msg.step * 2 + 2, 2**31, U32_MAX - 1]))  # data too short
    return 'step-over-data'


def _truncated(msg: Image, rng: np.random.Generator) -> str:
    size = len(msg.data)
    msg.data = bytes(msg.data)[: int(rng.integers(0, size))]
    return 'data-truncated'


def _huge_consistent(msg: Image, rng: np.random.Generator) -> str:
    bpp = _bpp(msg)
    msg.width, msg.height = MAX_SIDE + 2, 1
    msg.step = msg.width * bpp
    msg.data = bytes(msg.step)
    return 'size-over-max-side'


def _odd_step_16(msg: Image, rng: np.random.Generator) -> str:
    msg.encoding = str(rng.choice(['mono16', '16UC1', 'rgb16', 'bayer_rggb16']))
    msg.step = msg.width * _bpp(msg) + 1
    msg.data = bytes(msg.step * msg.height)
    return 'step-odd-16bit'


def _odd_width_yuv(msg: Image, rng: np.random.Generator) -> str:
    msg.encoding = str(rng.choice(['yuv422', 'uyvy', 'yuyv', 'yuv422_yuy2']))
    msg.width = msg.width + 1 if msg.width % 2 == 0 else msg.width
    msg.step = msg.width * 2
    msg.data = bytes(msg.step * msg.height)
    return 'yuv-odd-width'


BAD_MUTATIONS: tuple[Mutation, ...] = (
    _encoding,
    _zero_width,
    _zero_height,
    _wide,
    _tall,
    _huge_width,
    _huge_height,
    _step_short,
    _step_long,
    _truncated,
    _huge_consistent,
    _odd_step_16,
    _odd_width_yuv,
)


def _bigendian(msg: Image, rng: np.random.Generator) -> str:
    msg.is_bigendian = int(rng.integers(1, 256))
    return 'bigendian-flag'


def _extra_data(msg: Image, rng: np.random.Generator) -> str:
    msg.data = bytes(msg.data) + bytes(int(rng.integers(1, 64)))
    return 'data-longer'


OK_MUTATIONS: tuple[Mutation, ...] = (_bigendian, _extra_data)


def random_image(rng: np.random.Generator) -> Image:
    """Every field random (small data, so any size mismatch is likely)."""
    enc = str(rng.choice([*ENCODINGS, *BAD_ENCODINGS]))
    msg = Image(encoding=enc)
    msg.width = int(rng.choice([0, 1, 2, 3, 7, 16, 33, 64, MAX_SIDE + 1, U32_MAX]))
    msg.height = int(rng.choice([0, 1, 2, 5, 16, 31, MAX_SIDE + 1, U32_MAX]))
    msg.step = int(rng.choice([0, 1, 3, 6, 48, 96, 128, 200, U32_MAX]))
    msg.is_bigendian = int(rng.integers(0, 256))
    msg.data = rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
    return msg


def image_cases(rng: np.random.Generator, n: int) -> Iterator[Case]:
    """``n`` Image cases: every malformation in turn, valid variants and random messages."""
    mutations = [(m, 'bad') for m in BAD_MUTATIONS] + [(m, 'ok') for m in OK_MUTATIONS]
    for i in range(n):
        slot = i % (len(mutations) + 2)
        if slot == len(mutations):
            yield Case('image/valid', valid_image(rng), 'ok')
            continue
        if slot == len(mutations) + 1:
            yield Case('image/random-fields', random_image(rng), 'any')
            continue
        mutate, expect = mutations[slot]
        msg = valid_image(rng)
        kind = mutate(msg, rng)
        yield Case(f'image/{kind}', msg, expect)


def _encoded(rng: np.random.Generator, ext: str) -> bytes:
    h, w = int(rng.integers(8, 64)), int(rng.integers(8, 64))
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok, f'cv2.imencode({ext}) failed'
    return buf.tobytes()


def _compressed(fmt: str, data: bytes) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


def declaring(blob: bytes, width: int, height: int) -> bytes:
    """A valid small PNG or JPEG rewritten to declare width x height (PNG CRC kept valid)."""
    data = bytearray(blob)
    size = width.to_bytes(4, 'big') + height.to_bytes(4, 'big')
    if data[:4] == b'\x89PNG':
        data[16:24] = size
        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, 'big')  # IHDR's CRC
        return bytes(data)
    sof = data.index(b'\xff\xc0')  # baseline SOF0, what cv2.imencode writes
    data[sof + 5 : sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)


def _declared_huge(rng: np.random.Generator, ext: str) -> Case:
    blob = declaring(_encoded(rng, ext), HUGE_SIDE, HUGE_SIDE)
    fmt = ext[1:].replace('jpg', 'jpeg')
    return Case(f'compressed/declared-huge-{fmt}', _compressed(fmt, blob), 'bad', DECLARED_TOO_BIG)


def compressed_cases(rng: np.random.Generator, n: int) -> Iterator[Case]:
    """``n`` CompressedImage cases: random bytes, truncated and corrupted JPEG/PNG, formats,
    and small valid PNG/JPEG files declaring 20000x20000 (refused from the header)."""
    fmts = ('jpeg', 'png', '', 'rgb8; jpeg compressed bgr8', 'bmp', 'compressedDepth')
    for i in range(n):
        slot = i % 10
        fmt = str(rng.choice(fmts))
        if slot in (8, 9):
            yield _declared_huge(rng, '.png' if slot == 8 else '.jpg')
        elif slot == 0:
            size = int(rng.integers(0, 2048))
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            yield Case('compressed/random-bytes', _compressed(fmt, data), 'any')
        elif slot in (1, 2):
            ext = '.jpg' if slot == 1 else '.png'
            blob = _encoded(rng, ext)
            cut = blob[: int(rng.integers(0, len(blob) - 1))]
            yield Case(f'compressed/truncated-{ext[1:]}', _compressed(ext[1:], cut), 'bad')
        elif slot == 3:
            spoilt = bytearray(_encoded(rng, '.jpg'))
            for _ in range(int(rng.integers(1, 16))):
                spoilt[int(rng.integers(0, len(spoilt)))] = int(rng.integers(0, 256))
            yield Case('compressed/corrupt-jpeg', _compressed('jpeg', bytes(spoilt)), 'any')
        elif slot == 4:
            yield Case('compressed/empty', _compressed(fmt, b''), 'bad')
        elif slot == 5:
            blob = _encoded(rng, str(rng.choice(['.jpg', '.png'])))
            wrong = str(rng.choice(['png', 'jpeg', 'bmp', '', 'x' * 300]))
            yield Case('compressed/wrong-format-string', _compressed(wrong, blob), 'ok')
        elif slot == 6:
            blob = _encoded(rng, '.jpg')
            yield Case('compressed/depth-format-jpeg', _compressed('compressedDepth', blob), 'bad')
        else:
            yield Case('compressed/valid', _compressed('jpeg', _encoded(rng, '.jpg')), 'ok')
