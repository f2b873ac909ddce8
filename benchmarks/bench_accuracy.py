"""Answer accuracy of the demo model on held-out synthetic runs, per memory variant.

    python benchmarks/bench_accuracy.py [--seeds 200 201 ...] [--seconds 180] [--out DIR]

Each run: ``World(seed)`` (seeds never trained on; scripts/train_demo.py uses 100..107) rendered
at 640x480, one frame per second, fed to the real engine with the demo family
(EfficientNet-Lite0 -> memory -> trained projector -> SmolLM2-135M-Instruct on llama.cpp).
Questions (flash_vstream_ros/sim/qa.py): "which objects did the video show?" over the whole
memory ('seen', scored per object: colour named vs. visible in some frame; reported by how long
before the question the object was last visible) and over the last 3 s ('now', balanced
accuracy: a constant answer scores 0.5), and "what colour was the <shape>?" for each seen object
(default variant only; right when the first colour named is the object's). Variants, all
answered by the same model:

* ``default``: the default memory (STAR, config defaults) read out in full;
* ``newest``: the newest frame only (the question's window is the last 1 s: one frame);
* ``uniform``: frames sampled uniformly over the run, as many full 7x7 maps as fit in the
  default readout's token count, passed straight to the model (no memory).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import json
from pathlib import Path
import sys
import time
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flash_vstream_ros.cli.demo_eval import evaluate
from flash_vstream_ros.models.base import GenerationRequest, PromptContext
from flash_vstream_ros.models.demo import DemoModel, load_demo
from flash_vstream_ros.sim import qa

BUCKETS = ((0.0, 3.0, 'in view (<3 s)'), (3.0, 30.0, '3-30 s ago'), (30.0, 1e9, '>30 s ago'))
VARIANTS = ('default', 'newest', 'uniform')


def run_default(model: DemoModel, seed: int, seconds: float, newest: bool) -> list[qa.Score]:
    """Through the engine; ``newest``: the 'seen' question sees only the last 1 s."""
    scores, _ = evaluate(
        model, seed, seconds, 1.0, colour_questions=not newest, seen_last_s=1.0 if newest else None
    )
    return scores


def run_uniform(model: DemoModel, seed: int, seconds: float, tokens: int) -> list[qa.Score]:
    world, times = qa.run_world(seed, seconds, 1.0)
    per = model.feature_grid[0] * model.feature_grid[1]
    n = max(1, tokens // per)
    picks = [float(times[round(i * (len(times) - 1) / max(1, n - 1))]) for i in range(n)]
    maps = model.encode([world.render(t) for t in picks])  # (n, 7, 7, 320)
    flat = maps.reshape(-1, maps.shape[-1])  # (n * 49, 320)
    context = PromptContext(span=(0, int(picks[-1] * 1e9)), frames_seen=len(times), cameras=())
    request = GenerationRequest(max_new_tokens=48)
    text = model.answer(flat, qa.SEEN_Q, context, request).text
    sight = qa.sightings(world, times.tolist())
    return qa.score_seen('seen', text, sight.seen(), sight)


def bucket(score: qa.Score) -> str:
    if score.left_ago is None:
        return 'never seen'
    return next(name for lo, hi, name in BUCKETS if lo <= score.left_ago < hi)


def summarise(scores: list[qa.Score]) -> dict[str, Any]:
    seen = [s for s in scores if s.kind == 'seen']
    now = [s for s in scores if s.kind == 'now']
    by: dict[str, list[qa.Score]] = defaultdict(list)
    for s in seen:
        by[bucket(s)].append(s)
    out: dict[str, Any] = {
        'seen_acc': qa.accuracy(seen),
        'seen_items': len(seen),
        'by_left_ago': {k: [sum(s.right for s in v), len(v)] for k, v in sorted(by.items())},
    }
    if now:
        out['now_balanced'] = qa.balanced_accuracy(now)
    colour = [s for s in scores if s.kind == 'colour']
    if colour:
        out['colour'] = [sum(s.right for s in colour), len(colour)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', type=int, nargs='+', default=[200, 201, 202, 203, 204, 205])
    ap.add_argument('--seconds', type=float, default=180.0)
    ap.add_argument('--variants', default=','.join(VARIANTS))
    ap.add_argument('--out', default='bench_out/accuracy')
    args = ap.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    model = load_demo('', torch.device('cpu'))
    variants = args.variants.split(',')
    scores: dict[str, list[qa.Score]] = {v: [] for v in variants}
    for seed in args.seeds:
        for v in variants:
            t0 = time.perf_counter()
            if v == 'uniform':
                scores[v] += run_uniform(model, seed, args.seconds, 661)
            else:
                scores[v] += run_default(model, seed, args.seconds, v == 'newest')
            print(f'seed {seed} {v}: {time.perf_counter() - t0:.1f} s', flush=True)
    model.close()
    result = {v: summarise(s) for v, s in scores.items()}
    result['_meta'] = {
        'seeds': args.seeds,
        'seconds': args.seconds,
        'wall_s': round(time.perf_counter() - start, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'accuracy.json').write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


def table(result: dict[str, Any]) -> str:
    names = [b[2] for b in BUCKETS]
    lines = [
        '| variant | seen: named/visible, '
        + ' | '.join(names)
        + ' | seen acc | now (balanced) | colour of a shape |',
        '|---|' + '---|' * (len(names) + 3),
    ]
    for v, r in result.items():
        if v.startswith('_'):
            continue
        cells = []
        for name in names:
            right, n = r['by_left_ago'].get(name, [0, 0])
            cells.append(f'{right}/{n}' if n else '-')
        now = f'{r["now_balanced"]:.2f}' if 'now_balanced' in r else '-'
        colour = '{}/{}'.format(*r['colour']) if 'colour' in r else '-'
        lines.append(
            f'| {v} | ' + ' | '.join(cells) + f' | {r["seen_acc"]:.2f} | {now} | {colour} |'
        )
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())
