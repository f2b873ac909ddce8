"""ROS time stamps to integer nanoseconds (exact) or float seconds, and back (light: imported by
the ask client too)."""

from __future__ import annotations

import math
from typing import Any

from builtin_interfaces.msg import Time

from flash_vstream_ros.stamps import from_sec_nanosec, sec_nanosec

NANOSECONDS = 1_000_000_000


def to_seconds(stamp: Any) -> float:
    """A builtin_interfaces/Time (or Header.stamp) as float seconds."""
    return int(stamp.sec) + int(stamp.nanosec) / NANOSECONDS


def to_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time (or Header.stamp) as integer nanoseconds, exactly."""
    return from_sec_nanosec(stamp.sec, stamp.nanosec)


def ns_to_time(ns: int | None) -> Time:
    """Integer nanoseconds as builtin_interfaces/Time, exactly (zero for None or <= 0)."""
    if ns is None or ns <= 0:
        return Time()
    sec, nanosec = sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


def to_time(seconds: float | None) -> Time:
    """Float seconds as builtin_interfaces/Time (zero for None, NaN or a value <= 0)."""
    if seconds is None or not math.isfinite(seconds) or seconds <= 0.0:
        return Time()
    nanos = round(seconds * NANOSECONDS)
    return Time(sec=nanos // NANOSECONDS, nanosec=nanos % NANOSECONDS)


def is_zero(stamp: Any) -> bool:
    """True for the zero time (an unset stamp or an open window bound)."""
    return int(stamp.sec) == 0 and int(stamp.nanosec) == 0
