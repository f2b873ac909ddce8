"""Feeding a source's frames to the engine, with a progress line on stderr."""

from __future__ import annotations

from collections.abc import Iterable
import time
from typing import TYPE_CHECKING, TextIO

from flash_vstream_ros.cli.stamps import seconds
from flash_vstream_ros.cli.text import count

if TYPE_CHECKING:
    from flash_vstream_ros.engine import Engine
    from flash_vstream_ros.io.sources import FrameItem


class Unreadable:
    """The ``on_bad`` callback of a source: frames it could not decode, skipped and counted.

    Why: one corrupt file in a folder of thousands (or one bad bag message) should cost that
    frame, not the replay. Each is counted as rejected in the engine (the progress line shows
    it), warned about on its own line, and summed up once the replay ends.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.reasons: list[str] = []
        self.engine: Engine | None = None  # set once built: the source opens before the engine

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        if self.engine is not None:
            self.engine.reject_frame(reason)
        lead = '\n' if self._out.isatty() else ''  # off the progress line being rewritten
        self._out.write(f'{lead}warning: skipped an unreadable frame: {reason}\n')

    def report(self) -> None:
        """One summary line when anything was skipped."""
        if self.reasons:
            self._out.write(f'skipped {count(len(self.reasons), "unreadable frame")}\n')


def feed(
    engine: Engine,
    frames: Iterable[FrameItem],
    total: int | None,
    speed: str,
    limit: int,
    out: TextIO,
) -> None:
    """Submit every frame; paced by stamps (recorded) or by the engine (max)."""
    from flash_vstream_ros.errors import BadFrameError

    progress = Progress(out, limit or total)
    queue_size = engine.config.engine.frame_queue_size
    t_wall = time.monotonic()
    first: int | None = None
    for n, (image, stamp, camera) in enumerate(frames, start=1):
        first = stamp if first is None else first
        if speed == 'recorded':
            delay = seconds(stamp - first) - (time.monotonic() - t_wall)
            if delay > 0:
                time.sleep(delay)
        else:
            while engine.pending() >= queue_size:
                time.sleep(0.002)
        try:
            engine.submit_frame(image, stamp, camera)
        except BadFrameError as exc:
            progress.note(f'frame {n} of {camera} rejected: {exc}')
        progress.update(n, engine)
        if limit and n >= limit:
            break
    engine.wait_idle(3600.0)
    progress.finish(engine)


class Progress:
    """A one-line progress display on stderr (rewritten in place on a terminal)."""

    def __init__(self, out: TextIO, total: int | None) -> None:
        self._out = out
        self._total = total
        self._tty = out.isatty()
        self._period = 0.2 if self._tty else 2.0
        self._last = 0.0
        self._t0 = time.monotonic()
        self._n = 0

    def update(self, n: int, engine: Engine, force: bool = False) -> None:
        self._n = n
        now = time.monotonic()
        if not force and now - self._last < self._period:
            return
        self._last = now
        st = engine.status()
        of = f'/{self._total}' if self._total else ''
        noun = 'frame' if (self._total or n) == 1 else 'frames'
        line = (
            f'replay {n}{of} {noun} | ingested {st.frames_ingested} skipped '
            f'{st.frames_skipped_rate} dropped {st.frames_dropped_queue} rejected '
            f'{st.frames_rejected} | {now - self._t0:.1f} s'
        )
        self._out.write(f'\r{line}\x1b[K' if self._tty else f'{line}\n')
        self._out.flush()

    def note(self, text: str) -> None:
        self._out.write(('\n' if self._tty else '') + text + '\n')

    def finish(self, engine: Engine) -> None:
        self.update(self._n, engine, force=True)
        if self._tty:
            self._out.write('\n')
        self._out.flush()
