"""The pixel size a PNG or JPEG declares, read from its header without decoding it.

``declared_size(data)`` returns ``(width, height)`` from a PNG's IHDR chunk or a JPEG's first
SOFn (start of frame) marker, or ``None`` when the bytes are neither format or the header is
cut short (the decoder then gets to say what is wrong). A JPEG whose height is 0 (defined later
by a DNL marker) reports height 0. Pure Python, no decoder involved: a few hundred bytes are
read, so a tiny file declaring 20000x20000 pixels can be refused before it costs gigabytes.
"""

from __future__ import annotations

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_JPEG_SOI = b'\xff\xd8'
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone (no length field): TEM, RST0..7, SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_EOI, _SOS = 0xD9, 0xDA


def declared_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(width, height) the PNG or JPEG header declares; None if unknown or cut short."""
    head = bytes(data[: len(PNG_SIGNATURE)])
    if head == PNG_SIGNATURE:
        return _png_size(bytes(data[:24]))
    if head[:2] == _JPEG_SOI:
        return _jpeg_size(memoryview(data))
    return None


def _png_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 24 or head[12:16] != b'IHDR':
        return None
    return int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')


def _jpeg_size(data: memoryview) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None  # not at a marker: corrupt stream
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (_EOI, _SOS):
            return None  # image data reached without a frame header
        length = int.from_bytes(data[pos + 2 : pos + 4], 'big')
        if marker in _SOF_MARKERS:
            return _sof_size(data[pos + 4 : pos + 2 + length])
        if length < 2:
            return None
        pos += 2 + length
    return None


def _sof_size(body: memoryview) -> tuple[int, int] | None:
    if len(body) < 5:
        return None
    height = int.from_bytes(body[1:3], 'big')
    width = int.from_bytes(body[3:5], 'big')
    return width, height
