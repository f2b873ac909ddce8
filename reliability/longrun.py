"""Hours of camera stream fast-forwarded through the engine: memory bytes and RSS stay flat.

    python -m reliability.longrun --hours 4 --cache-dir DIR [--rate-hz 1]

Run as its own process (so its RSS is the engine's): the tiny model, the default STAR memory,
frames of the synthetic world stamped ``i / rate_hz`` seconds apart (stream time), submitted as
fast as the ingest worker takes them (never more than the queue holds, so none is dropped).
Prints one JSON line per sample (every 10 minutes of stream time by default) and a final
summary line.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import sys
import time
from typing import Any

import psutil
import torch

from flash_vstream_ros.config import AppConfig, with_overrides
from flash_vstream_ros.engine import Engine, Question
from flash_vstream_ros.sim.world import World, WorldConfig
from flash_vstream_ros.stamps import to_ns

SAMPLE_S = 600.0  # stream seconds between two samples
CAMERA = 'front'


def engine_config(cache_dir: str) -> AppConfig:
    return with_overrides(
        AppConfig(),
        {
            'model.family': 'tiny',
            'model.cache_dir': cache_dir,
            'model.device': 'cpu',
            'engine.ingest_rate_hz': 0.0,  # stamps are already 1/rate apart: keep every frame
            'engine.frame_queue_size': 16,
            'generation.max_new_tokens': 8,
        },
    )


def sample(engine: Engine, proc: psutil.Process, stream_s: float, t0: float) -> dict[str, Any]:
    s = engine.status()
    return {
        'stream_h': round(stream_s / 3600.0, 3),
        'wall_s': round(time.monotonic() - t0, 1),
        'frames_ingested': s.frames_ingested,
        'frames_dropped_queue': s.frames_dropped_queue,
        'frames_rejected': s.frames_rejected,
        'memory_bytes': s.memory_bytes,
        'visual_tokens': s.visual_tokens,
        'rss_bytes': held_rss(proc),
    }


def held_rss(proc: psutil.Process) -> int:
    """RSS once glibc has handed its free heap pages back (``malloc_trim``): what the process
    holds rather than what its allocator happens to cache (which varied by tens of MB between
    two samples of a flat memory on a loaded CI machine). Plain RSS where there is no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    return int(proc.memory_info().rss)


def feed(
    engine: Engine, world: World, frames: int, rate_hz: float, sample_s: float, out: Any
) -> int:
    """Submit ``frames`` frames paced by the queue; returns how many the engine accepted."""
    proc, t0 = psutil.Process(), time.monotonic()
    every = max(1, round(sample_s * rate_hz))
    accepted = 0
    for i in range(frames):
        while engine.pending() >= engine.config.engine.frame_queue_size - 1:
            time.sleep(0.001)
        stamp = 1.0 + i / rate_hz
        accepted += bool(engine.submit_frame(world.render(i / rate_hz), to_ns(stamp), CAMERA))
        if (i + 1) % every == 0:
            engine.wait_idle(60.0)
            print(json.dumps(sample(engine, proc, (i + 1) / rate_hz, t0)), file=out, flush=True)
    engine.wait_idle(60.0)
    return accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hours', type=float, default=1.0, help='stream time to feed')
    parser.add_argument('--rate-hz', type=float, default=1.0, help='stream frames per second')
    parser.add_argument('--cache-dir', default='', help='tiny model cache folder')
    parser.add_argument('--sample-s', type=float, default=SAMPLE_S, help='stream s per sample')
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    engine = Engine(engine_config(args.cache_dir))
    engine.start()
    try:
        world = World(WorldConfig(width=96, height=72))
        frames = round(args.hours * 3600.0 * args.rate_hz)
        t0 = time.monotonic()
        print(json.dumps(sample(engine, psutil.Process(), 0.0, t0)), flush=True)
        accepted = feed(engine, world, frames, args.rate_hz, args.sample_s, sys.stdout)
        wall = time.monotonic() - t0
        answer = engine.ask(Question('What did the camera see?'))
        status = engine.status()
    finally:
        engine.stop()
    summary = {
        'summary': True,
        'frames': frames,
        'accepted': accepted,
        'ingested': status.frames_ingested,
        'dropped': status.frames_dropped_queue,
        'rejected': status.frames_rejected,
        'wall_s': round(wall, 1),
        'fps': round(status.frames_ingested / max(wall, 1e-9), 1),
        'answer_tokens': answer.answer_tokens,
        'answer_latency_s': round(answer.latency_s, 3),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
