"""Ground-truth event log of the synthetic world: what the camera showed, when (JSON lines).

One line per record, flushed per frame so a test can read it while the camera runs:
``{"event": "world", ...}`` once (seed, size, objects), then per published frame
``{"event": "frame", "frame": i, "t": world_s, "stamp": header_s, "stamp_ns": header_ns}``,
and for each object
``appear`` (first frame it is visible), ``visible`` (every frame it is visible, or every
``visible_period_s``) and ``disappear`` (first frame it is no longer visible), each with
``object``, ``bbox`` [x0, y0, x1, y1) in pixels and ``pixels``.
"""

from __future__ import annotations

from collections.abc import Iterable
import dataclasses
import json
from pathlib import Path
from typing import IO, Any

from flash_vstream_ros.sim.world import Frame, World


class EventLog:
    """Turns per-frame sightings into appear / visible / disappear records."""

    def __init__(
        self, path: str | Path | None, world: World, visible_period_s: float = 0.0
    ) -> None:
        self.records: list[dict[str, Any]] = []
        self._keep = path is None
        self._file: IO[str] | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, 'w', encoding='utf-8')  # noqa: SIM115 - closed in close()
        self._period = visible_period_s
        self._last_visible: dict[str, float] = {}
        self._shown: set[str] = set()
        cfg = world.config
        self._write(
            [
                {
                    'event': 'world',
                    'seed': cfg.seed,
                    'width': cfg.width,
                    'height': cfg.height,
                    'objects': [
                        {'name': o.name, 'shape': o.shape, 'colour': list(o.colour)}
                        for o in world.objects
                    ],
                }
            ]
        )

    def add(self, frame: Frame, index: int, stamp_ns: int) -> list[dict[str, Any]]:
        """Log frame ``index`` (published with header stamp ``stamp_ns``); returns its records."""
        base = {
            'frame': index,
            't': round(frame.t, 9),
            'stamp': seconds(stamp_ns),
            'stamp_ns': int(stamp_ns),
        }
        out: list[dict[str, Any]] = [{'event': 'frame', **base}]
        now = {s.name: s for s in frame.sightings}
        for name in sorted(self._shown - set(now)):
            out.append({'event': 'disappear', **base, 'object': name})
        for name, s in now.items():
            extra = {'object': name, 'bbox': list(s.bbox), 'pixels': s.pixels}
            if name not in self._shown:
                out.append({'event': 'appear', **base, **extra})
            last = self._last_visible.get(name)
            if last is None or frame.t - last >= self._period or name not in self._shown:
                out.append({'event': 'visible', **base, **extra})
                self._last_visible[name] = frame.t
        self._shown = set(now)
        self._write(out)
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        if self._keep:
            self.records.extend(records)
        if self._file is not None:
            self._file.write(''.join(json.dumps(r, separators=(',', ':')) + '\n' for r in records))
            self._file.flush()


def seconds(stamp_ns: int) -> float:
    """A header stamp in ns as float seconds, the way the node reads it (sec + nanosec / 1e9)."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return sec + nanosec / 1e9


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All records of an event log file (a partial last line, while writing, is skipped)."""
    out = []
    for line in Path(path).read_text(encoding='utf-8').splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def sighting_dict(frame: Frame) -> list[dict[str, Any]]:
    """The sightings of a frame as plain dicts (for logs and debugging)."""
    return [dataclasses.asdict(s) for s in frame.sightings]
