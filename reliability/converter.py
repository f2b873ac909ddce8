"""Malformed camera messages fed straight to the converter (thousands per second)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
import time

import numpy as np

from flash_vstream_ros.errors import BadFrameError
from flash_vstream_ros.ros.images import compressed_to_rgb, image_to_rgb
from reliability.image_cases import MAX_SIDE, Case, compressed_cases, image_cases
from reliability.report import Row

HANG_S = 5.0  # one conversion slower than this counts as a hang
DECLARED_S = 0.05  # a refusal from the header alone: far below any 20000x20000 decode


def convert(case: Case) -> np.ndarray:
    msg = case.msg
    if case.kind.startswith('compressed/'):
        return compressed_to_rgb(msg, MAX_SIDE)
    return image_to_rgb(msg, MAX_SIDE)


def expected_shape(case: Case) -> tuple[int, int, int] | None:
    """The (H, W, 3) a raw Image must give; None for compressed images (size unknown)."""
    if case.kind.startswith('compressed/'):
        return None
    return int(case.msg.height), int(case.msg.width), 3


def check_case(case: Case, row: Row, kinds: Counter[str]) -> bool:
    """Convert one case and score it in ``row``; True when the converter rejected it."""
    row.tried += 1
    kinds[case.kind] += 1
    t0 = time.monotonic()
    try:
        out = convert(case)
    except BadFrameError as exc:
        row.errors += 1
        if not str(exc):
            row.fail(f'{case.kind}: BadFrameError without a reason')
        if case.expect == 'ok':
            row.fail(f'{case.kind}: valid message rejected: {exc}')
        if case.must_say and case.must_say not in str(exc):
            row.fail(f'{case.kind}: rejected for another reason: {exc}')
        if case.must_say and time.monotonic() - t0 > DECLARED_S:
            row.fail(f'{case.kind}: took {time.monotonic() - t0:.2f} s (decoded?)')
        return True
    except Exception as exc:  # anything else would reach the node's catch-all
        row.crashes += 1
        row.problems.append(f'{case.kind}: {type(exc).__name__}: {exc}')
        return True
    finally:
        if time.monotonic() - t0 > HANG_S:
            row.hangs += 1
    if case.expect == 'bad':
        row.fail(f'{case.kind}: malformed message accepted ({_describe(case)})')
    want = expected_shape(case)
    shape_ok = out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    if not shape_ok or (want is not None and out.shape != want):
        row.fail(f'{case.kind}: output {out.dtype} {out.shape}, expected {want}')
    return False


def _describe(case: Case) -> str:
    m = case.msg
    if case.kind.startswith('compressed/'):
        return f'format {m.format!r}, {len(m.data)} bytes'
    return f'{m.encoding!r} {m.width}x{m.height} step {m.step}, {len(m.data)} bytes'


def run_cases(name: str, cases: Iterable[Case]) -> Row:
    row = Row(name)
    kinds: Counter[str] = Counter()
    t0 = time.monotonic()
    for case in cases:
        check_case(case, row, kinds)
    rate = row.tried / max(time.monotonic() - t0, 1e-9)
    row.notes = f'{len(kinds)} kinds, {rate:.0f}/s'
    row.figures = {'kinds': dict(kinds)}
    return row


def run(n_images: int, n_compressed: int, seed: int = 0) -> list[Row]:
    """Rows for raw and compressed images fed directly to the converter."""
    rng = np.random.default_rng(seed)
    return [
        run_cases('converter: Image fields', image_cases(rng, n_images)),
        run_cases('converter: CompressedImage', compressed_cases(rng, n_compressed)),
    ]
