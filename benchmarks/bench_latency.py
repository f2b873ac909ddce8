"""Answer latency vs frames ingested: the STAR memory beside a "keep every frame" baseline.

    python benchmarks/bench_latency.py [--frames 10 100 1000 10000] [--new-tokens 16]
                                       [--reps 3] [--baseline-cap 8192] [--out result.json]

Both arms use the same model, the same question and the same generation (greedy, exactly
``--new-tokens`` tokens: end-of-sequence is disabled so every answer has the same length).
The memory is fed synthetic (16, 16, D) feature maps directly (the encoder is excluded), so
10,000 frames take seconds. At each checkpoint the benchmark times:

* ours: ``snapshot.readout()`` + ``model.answer()`` on the memory's tokens (at most 681);
* baseline: ``model.answer()`` on every frame's 2x2-pooled map (4 tokens per frame), i.e. the
  language model sees all frames; it stops where the prompt would exceed ``--baseline-cap``
  tokens or the model's context (the table says so).

Models: the tiny Flash-VStream v1 test model (Llama hidden 64, 2 layers, context 2048) and a
mid-size random-weight v1 model built here (Llama hidden 512, 4 layers, context 16384), both
with a 64-d vision feature (so one memory stream feeds both). Timings are the fastest of
``--reps`` (baseline: ``--baseline-reps``) runs after one warm-up, with one torch thread;
compare ratios, not absolute times. The minimum (not the median) is reported: on a shared
machine other processes only ever add time, so the minimum is the steadiest estimate.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
import json
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from flash_vstream_ros.config import MemoryConfig, ModelConfig
from flash_vstream_ros.memory import build_memory
from flash_vstream_ros.models import load_model
from flash_vstream_ros.models.base import (
    GenerationRequest,
    PromptContext,
    VisionLanguageModel,
)

QUESTION = 'What happened in the video, and where is the red toolbox?'
GRID, DIM = 16, 64
BASELINE_POOL = 2  # 2x2 tokens per frame in the baseline


@dataclass
class Row:
    model: str
    frames: int
    ours_tokens: int
    ours_s: float
    baseline_tokens: int
    baseline_s: float | None  # None: beyond the cap or the model's context
    baseline_note: str
    answer_tokens: int
    update_ms: float  # mean memory update over the frames before this checkpoint


def build_mid_model() -> VisionLanguageModel:
    """A random-weight v1 model with a mid-size Llama (hidden 512, 4 layers)."""
    from flash_vstream_ros.models.flash_vstream import FlashVStreamModel
    from flash_vstream_ros.models.preprocess import ImageSpec
    from flash_vstream_ros.models.tiny import build_tokenizer, tiny_v1_config, tiny_vision_config
    from flash_vstream_ros.models.v1_format import V1Spec, build_modules

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    config = tiny_v1_config(len(tokenizer))
    config.update(
        {
            'hidden_size': 512,
            'intermediate_size': 1376,
            'num_hidden_layers': 4,
            'num_attention_heads': 8,
            'num_key_value_heads': 8,
            'max_position_embeddings': 16384,
        }
    )
    spec = V1Spec.parse(config, 'mid')
    modules = build_modules(
        spec, tiny_vision_config(), torch.device('cpu'), torch.float32, init=True
    )
    modules.eval()
    return FlashVStreamModel(spec, modules, tokenizer, ImageSpec(size=224, crop=224), 'mid')


def fixed_length(model: VisionLanguageModel) -> VisionLanguageModel:
    """Disable end-of-sequence so every answer has exactly max_new_tokens tokens."""
    decoder = getattr(model, 'decoder', None)
    if decoder is not None:
        decoder.eos_ids = set()
    return model


def context_length(model: VisionLanguageModel) -> int:
    modules = getattr(model, 'modules', None)
    lm = getattr(modules, 'lm', None)
    return int(getattr(getattr(lm, 'config', None), 'max_position_embeddings', 0) or 1 << 30)


def answer_once(
    model: VisionLanguageModel, tokens_fn: Any, frames: int, new_tokens: int
) -> tuple[float, int, int]:
    """(seconds, visual tokens, answer tokens) of one readout + answer."""
    request = GenerationRequest(max_new_tokens=new_tokens, temperature=0.0)
    t0 = time.perf_counter()
    tokens = tokens_fn()  # (N, D)
    ctx = PromptContext(span=(0.0, float(frames)), frames_seen=frames, cameras=('cam',))
    gen = model.answer(tokens, QUESTION, ctx, request)
    return time.perf_counter() - t0, int(tokens.shape[0]), gen.tokens


@dataclass
class Checkpoint:
    frames: int
    snapshot: Any  # an immutable MemorySnapshot taken after ``frames`` updates
    update_ms: float


def feed(targets: list[int]) -> tuple[list[Checkpoint], torch.Tensor]:
    """Feed synthetic maps; snapshots at each target and every frame's 2x2 pooled tokens."""
    memory = build_memory(MemoryConfig(), DIM)
    gen = torch.Generator().manual_seed(0)
    pooled: list[torch.Tensor] = []
    checkpoints: list[Checkpoint] = []
    done = 0
    for target in sorted(targets):
        update_s = 0.0
        for i in range(done, target):
            feat = torch.randn(GRID, GRID, DIM, generator=gen)  # (16, 16, D)
            t0 = time.perf_counter()
            memory.update(feat, i * 100_000_000, 'cam')  # 10 Hz stamps, ns
            update_s += time.perf_counter() - t0
            small = torch.nn.functional.adaptive_avg_pool2d(feat.permute(2, 0, 1), BASELINE_POOL)
            pooled.append(small.flatten(1).T.contiguous())  # (4, D)
        checkpoints.append(
            Checkpoint(target, memory.snapshot(), 1000.0 * update_s / max(1, target - done))
        )
        done = target
    return checkpoints, torch.cat(pooled)  # (frames * 4, D)


def run(args: argparse.Namespace) -> list[Row]:
    torch.set_num_threads(1)
    cache = tempfile.mkdtemp(prefix='fvs_bench_')
    models = {'tiny': fixed_length(load_model(ModelConfig(family='tiny', cache_dir=cache)))}
    if not args.tiny_only:
        models['mid'] = fixed_length(build_mid_model())
    for name, m in models.items():
        if m.feature_dim != DIM:
            raise SystemExit(f'model {name} has feature_dim {m.feature_dim}, expected {DIM}')
    checkpoints, pooled = feed(args.frames)
    rows: list[Row] = []
    for name, model in models.items():
        rows.extend(measure(name, model, checkpoints, pooled, args))
        for row in rows[-len(checkpoints) :]:
            print(format_row(row), file=sys.stderr, flush=True)
    return rows


def measure(
    name: str,
    model: VisionLanguageModel,
    checkpoints: list[Checkpoint],
    pooled: torch.Tensor,
    args: argparse.Namespace,
) -> list[Row]:
    """Every checkpoint timed in interleaved rounds (load changes hit all of them alike):
    first all of ours, then all baselines, so that the big baseline prompts do not sit
    between two of our measurements."""
    limit = min(args.baseline_cap, context_length(model) - 64)
    ours: dict[int, list[float]] = {c.frames: [] for c in checkpoints}
    base: dict[int, list[float]] = {c.frames: [] for c in checkpoints}
    sizes: dict[int, tuple[int, int]] = {}
    for rnd in range(args.reps + 1):  # round 0 warms up
        for c in checkpoints:
            secs, n_visual, n_answer = answer_once(
                model, lambda c=c: c.snapshot.readout().tokens, c.frames, args.new_tokens
            )
            sizes[c.frames] = (n_visual, n_answer)
            if rnd:
                ours[c.frames].append(secs)
    fitting = [c for c in checkpoints if c.frames * BASELINE_POOL**2 <= limit]
    for rnd in range(args.baseline_reps + 1):
        for c in fitting:
            n_base = c.frames * BASELINE_POOL**2
            secs, _, _ = answer_once(model, lambda n=n_base: pooled[:n], c.frames, args.new_tokens)
            if rnd:
                base[c.frames].append(secs)
    rows = []
    for c in checkpoints:
        n_base = c.frames * BASELINE_POOL**2
        note = '' if base[c.frames] else f'{n_base} tokens > limit {limit}'
        rows.append(
            Row(
                name,
                c.frames,
                sizes[c.frames][0],
                min(ours[c.frames]),
                n_base,
                min(base[c.frames]) if base[c.frames] else None,
                note,
                sizes[c.frames][1],
                c.update_ms,
            )
        )
    return rows


def format_row(r: Row) -> str:
    base = f'{r.baseline_s:.3f}' if r.baseline_s is not None else f'n/a ({r.baseline_note})'
    ratio = f'{r.baseline_s / r.ours_s:.2f}x' if r.baseline_s is not None else '-'
    return (
        f'| {r.model} | {r.frames:,} | {r.ours_tokens} | {r.ours_s:.3f} | '
        f'{r.baseline_tokens:,} | {base} | {ratio} | {r.answer_tokens} | '
        f'{r.update_ms:.2f} |'
    )


def markdown(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f'Answer latency (s, fastest of {args.reps} runs for ours, {args.baseline_reps} for the '
        f'baseline), {args.new_tokens} new tokens, greedy, '
        '1 torch thread',
        '',
        '| model | frames | ours: visual tokens | ours: latency s | baseline: visual tokens '
        '| baseline: latency s | baseline / ours | answer tokens | memory update ms/frame |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    lines += [format_row(r) for r in rows]
    lines.append('')
    for name in dict.fromkeys(r.model for r in rows):
        mine = {r.frames: r for r in rows if r.model == name}
        lo, hi = min(mine), max(mine)
        full = min(
            (f for f, r in mine.items() if r.ours_tokens == mine[hi].ours_tokens), default=hi
        )
        lines.append(
            f'* {name}: ours {hi:,} vs {lo:,} frames: {mine[hi].ours_s / mine[lo].ours_s:.3f}x '
            f'({mine[lo].ours_tokens} -> {mine[hi].ours_tokens} visual tokens); {hi:,} vs '
            f'{full:,} frames (memory full, same tokens): '
            f'{mine[hi].ours_s / mine[full].ours_s:.3f}x'
        )
        base = [(f, r.baseline_s) for f, r in sorted(mine.items()) if r.baseline_s is not None]
        if len(base) >= 2:
            lines.append(
                f'* {name}: baseline {base[-1][0]:,} vs {base[0][0]:,} frames: '
                f'{base[-1][1] / base[0][1]:.2f}x (stops beyond {base[-1][0]:,} frames)'
            )
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--frames', type=int, nargs='+', default=[10, 25, 100, 400, 1000, 2000, 10000]
    )
    parser.add_argument('--new-tokens', type=int, default=16)
    parser.add_argument('--reps', type=int, default=10, help='timed runs of ours')
    parser.add_argument('--baseline-reps', type=int, default=3, help='timed runs of the baseline')
    parser.add_argument(
        '--baseline-cap', type=int, default=8192, help='largest baseline prompt in visual tokens'
    )
    parser.add_argument('--tiny-only', action='store_true', help='skip the mid-size model')
    parser.add_argument('--out', help='also write the rows as JSON here')
    args = parser.parse_args(argv)
    rows = run(args)
    print(markdown(rows, args))
    if args.out:
        Path(args.out).write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
