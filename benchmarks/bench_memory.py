"""Memory update cost and state size along a long stream (a benchmark script, not a test).

Streams real-size 16x16x1024 float32 maps (random, never two alike) into each memory on one CPU
thread and reports, around frames 100, 1,000 and 10,000: the median update time over the
``--window`` frames before the checkpoint, the state bytes (element maps, buffer and keys),
the time to take a snapshot and to read it out. Every frame is really absorbed; only the
windows are timed. Update time is the thread's CPU time (other processes on a shared machine
inflate it less than wall time); the wall-clock median and minimum are printed beside it, and
the load average is recorded with the results. Variants: STAR at paper sizes (capped buffer),
STAR with the released code's unbounded buffer, synopsis (v2 defaults), and a naive
keep-every-frame baseline (each frame pooled to 8x8 and kept, as a "give the model every
frame" approach must); star-released (unweighted Lloyd, released retrieval) on request.

    python benchmarks/bench_memory.py [--quick] [--out DIR] [--variants star,synopsis]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import platform
import statistics
import sys
import time
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flash_vstream_ros.config import MemoryConfig, StarConfig
from flash_vstream_ros.memory import build_memory, ops
from flash_vstream_ros.memory.base import StreamMemory

DIM, GRID = 1024, 16


class KeepEveryFrame:
    """Baseline: keep every frame pooled to 8x8 (what a model would be given without memory)."""

    def __init__(self) -> None:
        self.frames: list[torch.Tensor] = []

    def update(self, features: torch.Tensor, stamp: int, camera: str) -> None:
        self.frames.append(ops.pool_map(features, 8))  # (8, 8, D)

    def nbytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self.frames)


def variants() -> dict[str, Callable[[], Any]]:
    star = MemoryConfig()
    return {
        'star': lambda: build_memory(star, DIM),
        'star-unbounded': lambda: build_memory(
            MemoryConfig(star=StarConfig(buffer_capped=False)), DIM
        ),
        'star-released': lambda: build_memory(
            MemoryConfig(
                star=StarConfig(buffer_capped=False, kmeans_weighted=False, retrieval='released')
            ),
            DIM,
        ),
        'synopsis': lambda: build_memory(MemoryConfig(kind='synopsis'), DIM),
        'naive': KeepEveryFrame,
    }


def frame_source(seed: int = 0) -> Callable[[int], torch.Tensor]:
    """Frame i: one of 64 random maps, scaled and shifted by i (cheap; no two frames alike)."""
    pool = torch.randn(64, GRID, GRID, DIM, generator=torch.Generator().manual_seed(seed))
    return lambda i: pool[i % 64] * (1.0 + 1e-4 * i) + 1e-3 * (i // 64)


def probe(mem: Any) -> dict[str, float]:
    """State bytes, snapshot microseconds (median of 50), readout milliseconds (one)."""
    if isinstance(mem, KeepEveryFrame):
        return {'state_mb': mem.nbytes() / 1e6, 'snapshot_us': 0.0, 'readout_ms': 0.0}
    times = []
    for _ in range(50):
        t = time.perf_counter()
        snap = mem.snapshot()
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    snap.readout()
    readout = time.perf_counter() - t
    return {
        'state_mb': snap.nbytes / 1e6,
        'snapshot_us': statistics.median(times) * 1e6,
        'readout_ms': readout * 1e3,
    }


def run(name: str, make: Callable[[], StreamMemory], checkpoints: list[int],
        window: int) -> list[dict[str, Any]]:  # fmt: skip
    mem = make()
    frame = frame_source()
    timed = {c - k for c in checkpoints for k in range(1, min(window, c) + 1)}
    cpu: list[float] = []
    wall: list[float] = []
    rows = []
    start = time.perf_counter()
    for i in range(max(checkpoints)):
        x = frame(i)
        t, c = time.perf_counter(), time.thread_time()
        mem.update(x, i * 100_000_000, 'cam')  # 10 Hz stamps, ns
        if i in timed:
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - t)
        if i + 1 in checkpoints:
            rows.append({'variant': name, 'frames': i + 1,
                         'update_ms': statistics.median(cpu) * 1e3,
                         'update_wall_ms': statistics.median(wall) * 1e3,
                         'update_wall_min_ms': min(wall) * 1e3, **probe(mem)})  # fmt: skip
            cpu, wall = [], []
            print(f'  {name}: {i + 1} frames, {time.perf_counter() - start:.0f} s', flush=True)
    return rows


def ratio(rows: list[dict[str, Any]], name: str, key: str, hi: int, lo: int) -> float | None:
    by = {r['frames']: r[key] for r in rows if r['variant'] == name}
    return by[hi] / by[lo] if hi in by and lo in by and by[lo] else None


def markdown(rows: list[dict[str, Any]], checkpoints: list[int]) -> str:
    lines = [
        '| variant | frames | update CPU ms (median) | update wall ms (median / min) | state MB '
        '| snapshot µs | readout ms |',
        '|---|---:|---:|---:|---:|---:|---:|',
    ]
    for r in rows:
        lines.append(
            f'| {r["variant"]} | {r["frames"]:,} | {r["update_ms"]:.2f} '
            f'| {r["update_wall_ms"]:.2f} / {r["update_wall_min_ms"]:.2f} | {r["state_mb"]:.1f} '
            f'| {r["snapshot_us"]:.0f} | {r["readout_ms"]:.1f} |'
        )
    hi, lo = checkpoints[-1], checkpoints[-2] if len(checkpoints) > 1 else checkpoints[-1]
    lines += [
        '',
        f'| variant | update CPU median {hi:,}/{lo:,} | update wall min {hi:,}/{lo:,} '
        f'| state {hi:,}/{lo:,} |',
        '|---|---:|---:|---:|',
    ]
    for name in dict.fromkeys(r['variant'] for r in rows):
        t = ratio(rows, name, 'update_ms', hi, lo)
        m = ratio(rows, name, 'update_wall_min_ms', hi, lo)
        b = ratio(rows, name, 'state_mb', hi, lo)
        lines.append(f'| {name} | {_fmt(t)} | {_fmt(m)} | {_fmt(b)} |')
    return '\n'.join(lines)


def _fmt(v: float | None) -> str:
    return '-' if v is None else f'{v:.2f}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='checkpoints 100 and 1,000 only')
    parser.add_argument('--frames', default='', help='comma-separated checkpoints')
    parser.add_argument('--window', type=int, default=200, help='timed frames per checkpoint')
    parser.add_argument('--variants', default='star,star-unbounded,synopsis,naive',
                        help=f'comma-separated, from {sorted(variants())}')  # fmt: skip
    parser.add_argument('--out', type=Path, help='folder for memory.md and memory.json')
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoints = [100, 1000] if args.quick else [100, 1000, 10_000]
    if args.frames:
        checkpoints = sorted(int(f) for f in args.frames.split(','))
    table = variants()
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with torch.no_grad():
        for name in args.variants.split(','):
            rows += run(name, table[name], checkpoints, args.window)
    text = markdown(rows, checkpoints)
    machine = {
        'cpu': platform.processor() or platform.machine(),
        'cpus': os.cpu_count(),
        'torch': torch.__version__,
        'threads': torch.get_num_threads(),
        'loadavg_before': load_before,
        'loadavg_after': os.getloadavg(),
    }
    print(text)
    print(f'\nmachine: {machine}')
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / 'memory.md').write_text(text + f'\n\nmachine: {machine}\n')
        (args.out / 'memory.json').write_text(
            json.dumps({'rows': rows, 'machine': machine}, indent=1)
        )


if __name__ == '__main__':
    main()
