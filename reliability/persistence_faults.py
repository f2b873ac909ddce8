"""Faults around memory files: SIGKILL in the middle of saves, and files corrupted at random.

Kill test: a good file is saved first; then, many times, a child (from a forkserver) restores
it and saves in a loop (reliability.saver) until the parent SIGKILLs it at a random moment.
After every kill the file at the path must load (checksum and memory state) and hold the last
save the child reported or the one it was writing, never less (``lost`` counts any other
outcome).

Corruption test: copies of a good file with random bytes changed anywhere (header, metadata or
tensor data) must be refused with MemoryFileError by load_file (or memory.load_state), and the
file must be left as it was.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
import os
from pathlib import Path
import signal
import time

import numpy as np

from flash_vstream_ros.errors import FlashVStreamError, MemoryFileError
from reliability import saver
from reliability.report import Row

READY_TIMEOUT_S = 60.0


def _child(path: str, dim: int, conn: Connection) -> None:
    """Child: restore, then fold-and-save forever, reporting each save on ``conn``."""
    memory = saver.restore(path, dim)
    conn.send_bytes(f'ready {memory.snapshot().frames_seen}\n'.encode())
    seed = memory.snapshot().frames_seen
    while True:
        seed += 1
        saver.fold(memory, 1, dim, seed)
        conn.send_bytes(b'saving\n')
        conn.send_bytes(f'saved {saver.save(memory, path)}\n'.encode())


def _read_lines(conn: Connection, until: str, count: int, timeout: float) -> list[str] | None:
    """Lines from ``conn`` until ``count`` lines start with ``until`` ('' = up to EOF).

    None when that takes longer than ``timeout`` (a hang).
    """
    data = b''
    deadline = time.monotonic() + timeout
    while True:
        lines = data.decode().splitlines()
        if until and sum(x.startswith(until) for x in lines) >= count:
            return lines
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if not conn.poll(min(left, 0.1)):
            continue
        try:
            data += conn.recv_bytes()
        except EOFError:  # the child is gone and its end of the pipe with it
            return lines


def _context() -> ForkServerContext:
    """Children fork from a clean forkserver, never from this process: a fork of a process
    that runs other threads (an in-process ROS node, torch's pool) can crash in the child
    (it segfaulted in CI after the in-process node tests). The server imports the saver once,
    so a child still starts in milliseconds."""
    ctx = multiprocessing.get_context('forkserver')
    assert isinstance(ctx, ForkServerContext)
    ctx.set_forkserver_preload([__name__])
    return ctx


def _last_saved(lines: list[str], start: int) -> int:
    saved = [int(x.split()[1]) for x in lines if x.startswith('saved ')]
    return saved[-1] if saved else start


def _one_kill(path: Path, dim: int, rng: np.random.Generator, save_s: float) -> dict[str, int]:
    ctx = _context()
    rfd, wfd = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(path), dim, wfd), daemon=True)
    proc.start()
    wfd.close()
    try:
        # Kill during the n-th save (0 = while it restores), at a random point inside it.
        nth = int(rng.integers(0, 4))
        head = _read_lines(rfd, 'saving' if nth else 'ready', max(nth, 1), READY_TIMEOUT_S)
        if head is None or not head[0].startswith('ready'):
            return {'hang': 1}
        start = int(head[0].split()[1])
        time.sleep(float(rng.uniform(0.0, 1.2 * save_s)))
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10.0)
        lines = head + (_read_lines(rfd, '', 0, 10.0) or [])
    finally:
        rfd.close()
        if proc.is_alive():
            proc.kill()
            proc.join()
    return {'start': start, 'last': _last_saved(lines, start), 'exit': proc.exitcode or 0}


def _check_after_kill(path: Path, dim: int, last: int, row: Row) -> int:
    """Frames in the file after a kill; counts a loss when it does not load or is too old."""
    try:
        memory = saver.restore(str(path), dim)
    except (FlashVStreamError, ValueError, KeyError, RuntimeError) as exc:
        row.lost += 1
        row.problems.append(f'file does not load after a kill: {type(exc).__name__}: {exc}')
        return -1
    frames = memory.snapshot().frames_seen
    if frames not in (last, last + 1):
        row.lost += 1
        row.problems.append(f'file holds {frames} frames; last reported save was {last}')
    return frames


def kill_during_save(folder: Path, kills: int, dim: int = 256, seed: int = 0) -> Row:
    """SIGKILL a saving process ``kills`` times; the file must always load."""
    row = Row('faults: SIGKILL during save')
    rng = np.random.default_rng(seed)
    path = folder / 'memory.fvs'
    memory = saver.new_memory(dim)
    saver.fold(memory, 40, dim, seed)
    t0 = time.perf_counter()
    saver.save(memory, str(path))
    save_s = time.perf_counter() - t0
    mid_write = new_saves = 0
    for _ in range(kills):
        row.tried += 1
        before = set(folder.glob('.memory.fvs.*.tmp'))
        outcome = _one_kill(path, dim, rng, save_s)
        if outcome.get('hang'):
            row.hangs += 1
            continue
        if outcome['exit'] != -signal.SIGKILL:
            row.fail(f'child ended with {outcome["exit"]}, not by SIGKILL')
            continue
        row.kills += 1
        frames = _check_after_kill(path, dim, outcome['last'], row)
        new_saves += max(0, frames - outcome['start'])
        mid_write += len(set(folder.glob('.memory.fvs.*.tmp')) - before)
    leftovers = list(folder.glob('.memory.fvs.*.tmp'))
    row.notes = (
        f'save {save_s * 1000:.0f} ms ({path.stat().st_size / 1e6:.1f} MB); '
        f'{mid_write} kills mid-write; {new_saves} saves landed; '
        f'{len(leftovers)} temp files left'
    )
    row.figures = {
        'save_ms': save_s * 1000,
        'mid_write_kills': mid_write,
        'temp_files_left': len(leftovers),
    }
    return row


def _corrupt(blob: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """``blob`` with 1-8 random bytes changed; says where (header or tensor data)."""
    bad = bytearray(blob)
    header_end = 8 + int.from_bytes(blob[:8], 'little')
    where = set()
    in_header = bool(rng.integers(0, 2))  # half the files: header and metadata only
    for _ in range(int(rng.integers(1, 9))):
        pos = int(rng.integers(0, header_end if in_header else len(blob)))
        new = int(rng.integers(0, 256))
        while new == bad[pos]:
            new = int(rng.integers(0, 256))
        bad[pos] = new
        where.add('header' if pos < header_end else 'data')
    return bytes(bad), '+'.join(sorted(where))


def _tamper(blob: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """``blob`` with one digit or letter of its header changed into another of its kind.

    Such a file still parses: only a checksum over the metadata can tell it from a good one
    (a changed frame count or camera name).
    """
    header_end = 8 + int.from_bytes(blob[:8], 'little')
    bad = bytearray(blob)
    spots = [i for i in range(8, header_end) if chr(blob[i]).isalnum()]
    pos = spots[int(rng.integers(0, len(spots)))]
    alphabet = '0123456789' if chr(blob[pos]).isdigit() else 'abcdefghijklmnopqrstuvwxyz'
    bad[pos] = ord(str(rng.choice([c for c in alphabet if c != chr(blob[pos]).lower()])))
    return bytes(bad), 'header-value'


def corrupt_files(folder: Path, files: int, dim: int = 64, seed: int = 0) -> Row:
    """Random byte corruption must be refused with MemoryFileError, the file left untouched."""
    row = Row('faults: corrupt memory file')
    rng = np.random.default_rng(seed)
    good = folder / 'good.fvs'
    memory = saver.new_memory(dim)
    saver.fold(memory, 30, dim, seed)
    saver.save(memory, str(good))
    blob = good.read_bytes()
    path = folder / 'corrupt.fvs'
    accepted: dict[str, int] = {}
    for i in range(files):
        bad, where = _tamper(blob, rng) if i % 4 == 3 else _corrupt(blob, rng)
        path.write_bytes(bad)
        row.tried += 1
        try:
            saver.restore(str(path), dim)
        except MemoryFileError as exc:
            row.errors += 1
            if not str(exc):
                row.fail('MemoryFileError without a message')
        except Exception as exc:
            row.fail(f'corruption in {where} raised {type(exc).__name__}, not MemoryFileError')
        else:
            accepted[where] = accepted.get(where, 0) + 1
            row.fail(f'corrupt file accepted (bytes changed in {where})')
        if path.read_bytes() != bad:
            row.lost += 1
            row.problems.append('a refused file was changed')
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    row.notes = f'{len(blob)} B file; accepted: {accepted or "none"}'
    return row
