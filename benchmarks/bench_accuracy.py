"""Answer accuracy of the demo model on held-out synthetic runs, per memory variant.

    python benchmarks/bench_accuracy.py [--seeds 200 201 ...] [--seconds 180] [--out DIR]

Each run: ``World(seed)`` (seeds never trained on; scripts/train_demo.py uses 1000-1047) rendered
at 640x480, one frame per second, answered by the demo family (EfficientNet-Lite0 -> memory ->
trained projector -> SmolLM2-135M-Instruct + trained adapter). Two kinds of world: ``standard``
(objects come and go every 8-20 s) and ``long`` (cycles of 60-150 s, in view 10-30 % of each:
objects stay away for 40-135 s, so "left view more than 30 s ago" has items). Questions and
scoring: flash_vstream_ros/sim/qa.py ('seen': named in "which objects did the video show?";
'present': yes/no "was there a <name>?" for the world's 6 objects and 3 names it does not hold;
'now': yes/no "is the <name> in view now?" over the last 3 s; 'colour': "what colour was the
<shape>?"). Variants, all answered by the same model:

* ``default``: the default memory (STAR + timeline, config defaults) through the real engine;
* ``paper``: the paper's memory (config/paper_memory.yaml's settings) through the real engine;
* ``newest``: the newest frame only (the engine's window: the last 1 s);
* ``uniform``: frames sampled uniformly over the run, as many full 7x7 maps as the default
  readout has tokens, passed straight to the model (no memory);
* ``every``: every frame's full map (keep-every-frame: 49 tokens a frame, no memory).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import json
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flash_vstream_ros.cli.demo_eval import evaluate
from flash_vstream_ros.models.base import GenerationRequest, PromptContext
from flash_vstream_ros.models.demo import DemoModel, load_demo
from flash_vstream_ros.sim import qa
from flash_vstream_ros.sim.world import WorldConfig

BUCKETS = ((0.0, 3.0, 'in view (<3 s)'), (3.0, 30.0, '3-30 s ago'), (30.0, 1e9, '>30 s ago'))
VARIANTS = ('default', 'paper', 'newest', 'uniform', 'every')
WORLDS = {
    'standard': WorldConfig(),
    'long': WorldConfig(cycle_s=(60.0, 150.0), on_fraction=(0.1, 0.3)),
}
PAPER = {  # config/paper_memory.yaml
    'memory.star.abstract_seed_cosine': 1.0,
    'memory.star.recent_frames': 0,
    'memory.synopsis.recent_frames': 0,
    'memory.timeline.segments': 0,
}
MAX_NEW = 48


def run_engine(
    model: DemoModel, seed: int, seconds: float, world: WorldConfig, variant: str
) -> list[qa.Score]:
    scores, _ = evaluate(
        model,
        seed,
        seconds,
        1.0,
        overrides=PAPER if variant == 'paper' else None,
        seen_last_s=1.0 if variant == 'newest' else None,
        world_config=world,
        max_new_tokens=MAX_NEW,
    )
    return scores


def run_frames(
    model: DemoModel, seed: int, seconds: float, world: WorldConfig, maps: int | None
) -> list[qa.Score]:
    """No memory: ``maps`` frames sampled uniformly (None: every frame), their full maps
    straight to the model; a window question reads the sampled frames inside the window."""
    w, times = qa.run_world(seed, seconds, 1.0, world)
    n = len(times) if maps is None else max(1, min(maps, len(times)))
    picks = np.asarray([times[round(i * (len(times) - 1) / max(1, n - 1))] for i in range(n)])
    feats = torch.cat(
        [
            model.encode([w.render(float(t)) for t in picks[i : i + 16]])
            for i in range(0, len(picks), 16)
        ]
    )  # (n, 7, 7, 472)

    def ask(question: str, last_s: float | None) -> str:
        keep = picks >= picks[-1] - last_s + 1e-9 if last_s else np.ones(len(picks), bool)
        keep[-1] = True
        tokens = feats[torch.from_numpy(keep)].reshape(-1, feats.shape[-1])  # (k * 49, 472)
        span = (int(picks[keep][0] * 1e9), int(picks[-1] * 1e9))
        context = PromptContext(span=span, frames_seen=len(times), cameras=())
        return model.answer(
            tokens, question, context, GenerationRequest(max_new_tokens=MAX_NEW)
        ).text

    scores, _ = qa.score_run(ask, qa.sightings(w, times.tolist()))
    return scores


def bucket(score: qa.Score) -> str:
    if score.left_ago is None:
        return 'never seen'
    return next(name for lo, hi, name in BUCKETS if lo <= score.left_ago < hi)


def right_of(scores: list[qa.Score]) -> list[int]:
    return [sum(s.right for s in scores), len(scores)]


def summarise(scores: list[qa.Score]) -> dict[str, Any]:
    by_kind: dict[str, list[qa.Score]] = defaultdict(list)
    for s in scores:
        by_kind[s.kind].append(s)
    out: dict[str, Any] = {}
    for kind, items in by_kind.items():
        out[kind] = {'right': right_of(items), 'balanced': round(qa.balanced_accuracy(items), 3)}
    present = [s for s in by_kind['present'] if s.truth]  # seen objects, by when they left view
    by: dict[str, list[qa.Score]] = defaultdict(list)
    for s in present:
        by[bucket(s)].append(s)
    out['present_by_left_ago'] = {k: right_of(v) for k, v in sorted(by.items())}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', type=int, nargs='+', default=[200, 201, 202, 203, 204, 205])
    ap.add_argument('--seconds', type=float, default=180.0)
    ap.add_argument('--variants', default=','.join(VARIANTS))
    ap.add_argument('--worlds', default=','.join(WORLDS))
    ap.add_argument('--uniform-maps', type=int, default=13, help='681 readout tokens / 49')
    ap.add_argument('--out', default='bench_out/accuracy')
    args = ap.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    model = load_demo('', torch.device('cpu'))
    variants, worlds = args.variants.split(','), args.worlds.split(',')
    scores: dict[str, list[qa.Score]] = defaultdict(list)
    for world in worlds:
        for seed in args.seeds:
            for v in variants:
                t0 = time.perf_counter()
                if v in ('uniform', 'every'):
                    maps = args.uniform_maps if v == 'uniform' else None
                    got = run_frames(model, seed, args.seconds, WORLDS[world], maps)
                else:
                    got = run_engine(model, seed, args.seconds, WORLDS[world], v)
                scores[f'{world}/{v}'] += got
                print(f'{world} seed {seed} {v}: {time.perf_counter() - t0:.1f} s', flush=True)
    model.close()
    result: dict[str, Any] = {k: summarise(s) for k, s in scores.items()}
    result['_meta'] = {
        'seeds': args.seeds,
        'seconds': args.seconds,
        'wall_s': round(time.perf_counter() - start, 1),
        'projector': model.meta,
        'adapter': model.adapter,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'accuracy.json').write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


def balanced(r: dict[str, Any], kind: str) -> str:
    return f'{r[kind]["balanced"]:.2f}' if kind in r else '-'


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per world/variant; 'present' of seen objects by when they left view,
    then balanced accuracy per question type (a constant answer scores 0.50)."""
    names = [b[2] for b in BUCKETS]
    lines = [
        '| world / variant | '
        + ' | '.join(f'present, {n}' for n in names)
        + ' | present (bal.) | now (bal.) | seen: named (bal.) | colour of a shape |',
        '|---|' + '---|' * (len(names) + 4),
    ]
    for key, r in result.items():
        if key.startswith('_'):
            continue
        cells = []
        for name in names:
            right, n = r['present_by_left_ago'].get(name, [0, 0])
            cells.append(f'{right}/{n}' if n else '-')

        colour = '{}/{}'.format(*r['colour']['right']) if 'colour' in r else '-'
        lines.append(
            f'| {key} | '
            + ' | '.join(cells)
            + ''.join(f' | {balanced(r, kind)}' for kind in ('present', 'now', 'seen'))
            + f' | {colour} |'
        )
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())
