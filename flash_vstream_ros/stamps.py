"""Time stamps: integer nanoseconds end to end.

A ROS header stamp is (sec, nanosec); as float seconds it loses its last digits (a stamp of
1796190000.123456789 s comes back as ...123456768), so evidence could not be looked up by the
stamp it was published with. Every stamp inside this package (memory, files, evidence, status)
is therefore an ``int`` of nanoseconds; seconds appear only at the edges (CLI text, durations
such as ``last_s``), converted here.
"""

from __future__ import annotations

import math
import numbers

NS_PER_S = 1_000_000_000
INT64 = (-(2**63), 2**63 - 1)  # what the memory's int64 tensors hold


def to_ns(seconds: float) -> int:
    """Float seconds as integer nanoseconds (rounded to the nearest)."""
    return round(seconds * NS_PER_S)


def to_s(ns: int) -> float:
    """Integer nanoseconds as float seconds (for text and arithmetic on durations)."""
    return ns / NS_PER_S


def from_sec_nanosec(sec: int, nanosec: int) -> int:
    """A ROS (sec, nanosec) pair as integer nanoseconds, exactly."""
    return int(sec) * NS_PER_S + int(nanosec)


def sec_nanosec(ns: int) -> tuple[int, int]:
    """Integer nanoseconds as a ROS (sec, nanosec) pair (nanosec in [0, 1e9)), exactly."""
    return divmod(int(ns), NS_PER_S)


def stamp_error(value: object) -> str | None:
    """Why ``value`` is not a stamp (int nanoseconds, numpy integers too), or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and math.isfinite(float(value)):
            return (
                f'stamp must be integer nanoseconds, got {value!r} '
                '(flash_vstream_ros.stamps.to_ns converts seconds)'
            )
        return f'stamp must be integer nanoseconds, got {value!r}'
    if not INT64[0] <= int(value) <= INT64[1]:
        return f'stamp {value!r} ns is outside the int64 range'
    return None


def clamp_ns(value: int) -> int:
    """``value`` clamped into the int64 range (a window bound far in the past or future)."""
    return min(max(value, INT64[0]), INT64[1])


def fmt_s(ns: int | None) -> str:
    """Nanoseconds as seconds with millisecond digits, for humans ('12.345'); '-' for None."""
    return '-' if ns is None else f'{ns / NS_PER_S:.3f}'
