"""Replay stamps after a loaded memory, and how the CLI prints a stamp.

Why a shift: a video or image folder restarts its stamps at 0 on every replay. After
``--load`` of a memory that already holds the same camera, the second pass would sit on top of
the first (same stamps, two different frames each), and windows and evidence stamps would mean
nothing. So when the replay's first stamp is not after the loaded memory's newest one, every
replayed stamp is shifted to start one frame period after it; a bag recorded later (absolute
stamps after the memory) is left alone.

Stamps are integer nanoseconds, as everywhere in the package (flash_vstream_ros.stamps); the
CLI prints and reads seconds. Everything here that knows the unit: :data:`SECOND`,
:func:`seconds`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
import itertools
from typing import TYPE_CHECKING, TextIO

from flash_vstream_ros.stamps import NS_PER_S

if TYPE_CHECKING:
    from flash_vstream_ros.io.sources import FrameItem

SECOND = NS_PER_S  # one second in stamp units (integer nanoseconds)
PERIOD_LOOKAHEAD = 16  # frames read ahead to find the period of the first frame's camera


def seconds(stamp: int) -> float:
    """A stamp (ns) in seconds, for printing."""
    return stamp / SECOND


def format_stamp(stamp: int | None) -> str:
    """A stamp as seconds with 3 decimals ('?' when unknown): 3.804, not 3.8038000000000003."""
    return '?' if stamp is None else f'{seconds(stamp):.3f}'


def replay_offset(newest: int | None, first: int, period: int) -> int:
    """What to add to replayed stamps so the first lands one period after ``newest``.

    0 when there is no loaded memory or the replay already starts after it.
    """
    if newest is None or first > newest:
        return first - first  # zero of the stamps' own type
    return newest + period - first


def first_period(head: list[FrameItem]) -> int:
    """The gap between the first frame and the next frame of its camera (one second if none)."""
    if not head:
        return SECOND
    first, camera = head[0][1], head[0][2]
    for _, stamp, cam in head[1:]:
        if cam == camera and stamp > first:
            return stamp - first
    return SECOND


def after_memory(
    frames: Iterable[FrameItem], newest: int | None, out: TextIO
) -> Iterator[FrameItem]:
    """``frames`` with stamps shifted past ``newest`` (a loaded memory's); logged once."""
    it = iter(frames)
    head = list(itertools.islice(it, PERIOD_LOOKAHEAD))
    if not head:
        return
    offset = replay_offset(newest, head[0][1], first_period(head))
    if offset:
        out.write(
            f'replay stamps shifted by +{format_stamp(offset)} s to follow the loaded memory '
            f'(newest stamp {format_stamp(newest)} s): the replay starts at '
            f'{format_stamp(head[0][1] + offset)} s\n'
        )
    for image, stamp, camera in itertools.chain(head, it):
        yield image, stamp + offset, camera
