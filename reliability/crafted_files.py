"""Memory files crafted to be consistent but wrong: each must be refused, never load or crash.

Random corruption (persistence_faults.corrupt_files) is caught by the checksums. These files
are different: the bad values are written through ``persistence.save_file``, so every
checksum matches and only the checks on the values themselves can refuse them (NaN or inf
feature maps, negative weights, NaN stamps, start after end, camera bits naming no camera).
Two structural cases (a truncated file, a wrong header) are checked by io/persistence.py.

Each case says what the suite expects (``refused``) and which code is meant to refuse it;
the row reports every outcome honestly: ``refused`` (MemoryFileError, or an error the engine's
keeper turns into one, with a message), ``loaded`` (accepted silently: a failure) or ``crash``
(any other exception). The value checks live in memory/loading.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from flash_vstream_ros.errors import FlashVStreamError
from flash_vstream_ros.io import persistence
from reliability import saver
from reliability.report import Row

Tensors = dict[str, torch.Tensor]
VALUES = 'memory/loading.py value checks on load'
STRUCTURE = 'io/persistence.py'


@dataclass(frozen=True)
class Crafted:
    """One crafted file: how its tensors (or bytes) are spoilt, and who must refuse it."""

    name: str
    refused_by: str
    spoil_tensors: Callable[[Tensors], None] | None = None
    spoil_bytes: Callable[[bytes], bytes] | None = None
    expect: str = 'refused'


def _set(key: str, value: float | int) -> Callable[[Tensors], None]:
    def spoil(tensors: Tensors) -> None:
        t = tensors[key].clone()
        t.view(-1)[0] = value
        tensors[key] = t

    return spoil


def _start_after_end(tensors: Tensors) -> None:
    start = tensors['spatial.start'].clone()
    start[0] = tensors['spatial.end'][0] + 100_000_000_000  # 100 s after its end (ns)
    tensors['spatial.start'] = start


CASES: tuple[Crafted, ...] = (
    Crafted('maps-nan', VALUES, _set('spatial.maps', float('nan'))),
    Crafted('maps-inf', VALUES, _set('temporal.maps', float('inf'))),
    Crafted('weight-negative', VALUES, _set('temporal.weight', -1.0)),
    Crafted('stamp-nan', VALUES, _set('spatial.off', float('nan'))),  # the mean stamp's offset
    Crafted('stamp-outside-span', VALUES, _set('temporal.off', 1e30)),
    Crafted('start-after-end', VALUES, _start_after_end),
    Crafted('camera-bits-out-of-range', VALUES, _set('spatial.cams', 1 << 40)),
    Crafted('truncated', STRUCTURE, spoil_bytes=lambda blob: blob[: len(blob) * 2 // 3]),
    Crafted('wrong-header', STRUCTURE, spoil_bytes=lambda blob: b'GIF89a\x00\x00' + blob[8:]),
)


def write_case(case: Crafted, good: Path, path: Path) -> None:
    """Write ``case`` to ``path`` from the good file (checksums valid for tensor cases)."""
    if case.spoil_bytes is not None:
        path.write_bytes(case.spoil_bytes(good.read_bytes()))
        return
    loaded = persistence.load_file(good)
    rec = loaded.records[0]
    tensors = dict(rec.tensors)
    assert case.spoil_tensors is not None
    case.spoil_tensors(tensors)
    records = [persistence.MemoryRecord(rec.key, tensors, rec.meta)]
    info = {k: v for k, v in loaded.info.items() if k not in ('memories', 'sha256')}
    persistence.save_file(path, records, info)


def outcome(path: Path, dim: int) -> tuple[str, str]:
    """('refused' | 'loaded' | 'crash', message) of loading ``path`` as the engine would."""
    try:
        saver.restore(str(path), dim)
    except (FlashVStreamError, ValueError, KeyError, RuntimeError) as exc:
        # MemoryKeeper turns these into MemoryFileError naming the file
        if not str(exc):
            return 'crash', f'{type(exc).__name__} without a message'
        return 'refused', str(exc)
    except Exception as exc:
        return 'crash', f'{type(exc).__name__}: {exc}'
    return 'loaded', ''


def good_file(folder: Path, dim: int, seed: int = 0) -> Path:
    """A valid memory file (30 frames) that the cases spoil, written once per folder."""
    good = folder / 'crafted_good.fvs'
    if not good.exists():
        memory = saver.new_memory(dim)
        saver.fold(memory, 30, dim, seed)
        saver.save(memory, str(good))
    return good


def run_case(folder: Path, case: Crafted, dim: int = 64) -> tuple[str, str]:
    """Outcome of one case: write it next to the good file, then load it."""
    path = folder / f'crafted_{case.name}.fvs'
    write_case(case, good_file(folder, dim), path)
    return outcome(path, dim)


def crafted_files(folder: Path, dim: int = 64) -> Row:
    """The row: every crafted file refused with a message; loaded or crashed cases fail it."""
    row = Row('faults: crafted memory file')
    loaded = []
    for case in CASES:
        got, message = run_case(folder, case, dim)
        row.tried += 1
        if got == 'refused':
            row.errors += 1
        elif got == 'crash':
            row.crashes += 1
            row.problems.append(f'{case.name}: {message}')
        else:
            loaded.append(case.name)
            row.fail(f'{case.name}: loaded silently (expected refused by {case.refused_by})')
    row.notes = f'{len(CASES)} kinds; loaded silently: {", ".join(loaded) or "none"}'
    return row
