"""Vision encoder throughput on this CPU against the physical floor from FLOPs.

Encoders a user would pick for the memory (CLIP ViT-L/14 224 is Flash-VStream's), built from
transformers configs with RANDOM weights (no downloads; speed does not depend on the weights).
For each encoder, thread count and batch size: the median seconds per frame of the forward pass
(preprocessing excluded). The floor is the encoder's FLOPs (counted from the config: patch
embedding, per-layer attention and MLP matmuls, pooling head) divided by the fp32 matmul GFLOP/s
that a large ``torch.mm`` reaches on this machine in the same run. measured / floor says how far
the encoder is from what the CPU can do at best.

    python benchmarks/bench_encoder.py --out bench_out/encoder
    python benchmarks/bench_encoder.py --quick          # ViT-B/32 only, for a smoke run
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass
import json
import os
from pathlib import Path
import platform
import statistics
import time
from typing import Any

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

import torch


@dataclass(frozen=True)
class EncoderSpec:
    """A ViT vision tower, described by the config fields that set its cost."""

    name: str
    family: str  # clip or siglip
    image_size: int
    patch_size: int
    hidden: int
    intermediate: int
    layers: int
    heads: int

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def tokens(self) -> int:
        return self.patches + (1 if self.family == 'clip' else 0)  # CLIP adds a class token


ENCODERS: tuple[EncoderSpec, ...] = (
    EncoderSpec('CLIP ViT-L/14 224 (paper)', 'clip', 224, 14, 1024, 4096, 24, 16),
    EncoderSpec('CLIP ViT-B/16 224', 'clip', 224, 16, 768, 3072, 12, 12),
    EncoderSpec('CLIP ViT-B/32 224', 'clip', 224, 32, 768, 3072, 12, 12),
    EncoderSpec('SigLIP-B/16 224', 'siglip', 224, 16, 768, 3072, 12, 12),
    EncoderSpec('CLIP ViT-L/14 336', 'clip', 336, 14, 1024, 4096, 24, 16),
)


def encoder_flops(spec: EncoderSpec) -> float:
    """FLOPs of one frame's forward pass (2 per multiply-add), matmuls only."""
    d, i, t = spec.hidden, spec.intermediate, spec.tokens
    macs = spec.patches * 3 * spec.patch_size**2 * d  # patch embedding (a strided conv)
    per_layer = 4 * t * d * d  # q, k, v and output projections
    per_layer += 2 * t * t * d  # scores q.k^T and the weighted sum of v
    per_layer += 2 * t * d * i  # MLP up and down
    macs += spec.layers * per_layer
    if spec.family == 'siglip':  # attention-pooling head: one probe query over all tokens
        macs += 2 * t * d * d + 2 * d * d + 2 * t * d + 2 * d * i
    return 2.0 * macs


def build_encoder(spec: EncoderSpec) -> torch.nn.Module:
    """A random-weight vision tower of the spec's shape, in eval mode (fp32, CPU)."""
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    shape: dict[str, Any] = {
        'image_size': spec.image_size,
        'patch_size': spec.patch_size,
        'hidden_size': spec.hidden,
        'intermediate_size': spec.intermediate,
        'num_hidden_layers': spec.layers,
        'num_attention_heads': spec.heads,
    }
    model: torch.nn.Module
    if spec.family == 'clip':
        model = CLIPVisionModel(CLIPVisionConfig(**shape))
    else:
        model = SiglipVisionModel(SiglipVisionConfig(**shape))
    return model.eval()


def matmul_gflops(threads: int, n: int = 2048, reps: int = 10) -> float:
    """Best fp32 GFLOP/s of an n x n torch.mm with ``threads`` threads (the achievable peak)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float('inf')
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def time_forward(
    model: torch.nn.Module, spec: EncoderSpec, batch: int, budget_s: float, max_reps: int
) -> tuple[float, int]:
    """Median seconds per frame over repetitions that fit ``budget_s`` (at least one)."""
    pixels = torch.randn(batch, 3, spec.image_size, spec.image_size)  # (B, 3, S, S)
    times: list[float] = []
    spent = 0.0
    with torch.inference_mode():
        while len(times) < max_reps and (not times or spent + times[-1] <= budget_s):
            start = time.perf_counter()
            model(pixel_values=pixels)
            elapsed = time.perf_counter() - start
            times.append(elapsed)
            spent += elapsed
    return statistics.median(times) / batch, len(times)


def warm_up(model: torch.nn.Module, spec: EncoderSpec) -> None:
    """One untimed forward pass (allocator, kernels) at the current thread count."""
    with torch.inference_mode():
        model(pixel_values=torch.randn(1, 3, spec.image_size, spec.image_size))


def machine_info() -> dict[str, Any]:
    model_name = ''
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model_name = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return {
        'cpu': model_name or platform.processor(),
        'cores': os.cpu_count(),
        'torch': torch.__version__,
        'python': platform.python_version(),
        'loadavg_start': list(os.getloadavg()),
    }


@dataclass
class Plan:
    """What to time, and when to stop."""

    encoders: list[EncoderSpec]
    threads: list[int]
    batches: list[int]
    budget_s: float  # per (encoder, threads, batch), after the first repetition
    max_reps: int
    deadline: float  # time.monotonic() after which the remaining timings are skipped


def run(plan: Plan, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Time every (encoder, threads, batch) of the plan; ``save`` gets the result after each."""
    result: dict[str, Any] = {
        'benchmark': 'encoder',
        'machine': machine_info(),
        'encoders': [asdict(e) for e in plan.encoders],
        'rows': [],
        'skipped': [],
    }
    rates: dict[str, list[float]] = {str(t): [] for t in plan.threads}  # matmul GFLOP/s
    for spec in plan.encoders:
        if time.monotonic() > plan.deadline:
            result['skipped'].append(spec.name)
            continue
        model = build_encoder(spec)
        for t in plan.threads:
            torch.set_num_threads(t)
            rates[str(t)].append(matmul_gflops(t))  # right before this encoder's timings
            warm_up(model, spec)
            for b in plan.batches:
                s_frame, reps = time_forward(model, spec, b, plan.budget_s, plan.max_reps)
                row = measured_row(spec, t, b, s_frame, reps, rates[str(t)][-1])
                result['rows'].append(row)
                print(format_row(row), flush=True)
                save(finish(result, rates))
        del model
    for t in plan.threads:
        rates[str(t)].append(matmul_gflops(t))
    return finish(result, rates)


def measured_row(
    spec: EncoderSpec, threads: int, batch: int, s_frame: float, reps: int, gflops: float
) -> dict[str, Any]:
    row = {
        'encoder': spec.name,
        'image_size': spec.image_size,
        'threads': threads,
        'batch': batch,
        's_per_frame': s_frame,
        'fps': 1.0 / s_frame,
        'reps': reps,
        'gflop_per_frame': encoder_flops(spec) / 1e9,
        'matmul_gflops_adjacent': gflops,
    }
    return with_floor(row, gflops)


def finish(result: dict[str, Any], rates: dict[str, list[float]]) -> dict[str, Any]:
    """The result with every floor at the best matmul rate seen so far (the achievable one)."""
    best = {t: max(r) for t, r in rates.items() if r}
    rows = [with_floor(row, best[str(row['threads'])]) for row in result['rows']]
    machine = {**result['machine'], 'loadavg_end': list(os.getloadavg())}
    return {**result, 'machine': machine, 'rows': rows, 'matmul_gflops': best,
            'matmul_gflops_all': rates}  # fmt: skip


def with_floor(row: dict[str, Any], gflops: float) -> dict[str, Any]:
    """The row with the FLOP floor at ``gflops`` and measured / floor."""
    floor = row['gflop_per_frame'] / gflops
    # the same against the matmul rate measured right before (both slowed by a busy machine)
    adjacent = row['gflop_per_frame'] / row['matmul_gflops_adjacent']
    return {
        **row,
        'floor_s_per_frame': floor,
        'ratio_to_floor': row['s_per_frame'] / floor,
        'ratio_to_adjacent_floor': row['s_per_frame'] / adjacent,
    }


def format_row(row: dict[str, Any]) -> str:
    return (
        f'| {row["encoder"]} | {row["threads"]} | {row["batch"]} | '
        f'{row["s_per_frame"]:.3f} | {row["fps"]:.2f} | {row["gflop_per_frame"]:.1f} | '
        f'{row["floor_s_per_frame"]:.3f} | {row["ratio_to_floor"]:.2f} | '
        f'{row["ratio_to_adjacent_floor"]:.2f} | {row["reps"]} |'
    )


TABLE_HEAD = (
    '| encoder | threads | batch | s/frame (median) | frames/s | GFLOP/frame | '
    'floor s/frame | measured/floor | measured/adjacent floor | reps |\n'
    '|---|---|---|---|---|---|---|---|---|---|'
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='bench_out/encoder', help='folder for encoder.json')
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 4])
    parser.add_argument(
        '--budget-s',
        type=float,
        default=4.0,
        help='time per (encoder, threads, batch) after the first repetition',
    )
    parser.add_argument('--max-reps', type=int, default=5)
    parser.add_argument(
        '--max-seconds',
        type=float,
        default=600.0,
        help='start no further encoder after this many seconds (busy machines)',
    )
    parser.add_argument('--quick', action='store_true', help='ViT-B/32 only, batch 1, 1 thread')
    args = parser.parse_args(argv)
    encoders = list(ENCODERS)
    threads, batches = args.threads, args.batches
    if args.quick:
        encoders = [e for e in ENCODERS if 'B/32' in e.name]
        threads, batches = [1], [1]
        args.max_reps = min(args.max_reps, 3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    plan = Plan(encoders, threads, batches, args.budget_s, args.max_reps,
                time.monotonic() + args.max_seconds)  # fmt: skip

    def save(result: dict[str, Any]) -> None:
        result = {**result, 'wall_s': time.perf_counter() - start, 'quick': bool(args.quick)}
        (out / 'encoder.json').write_text(json.dumps(result, indent=2))

    print(TABLE_HEAD, flush=True)
    result = run(plan, save)
    save(result)
    print('\nfinal (floor at the best matmul rate of the run):\n' + TABLE_HEAD)
    for row in result['rows']:
        print(format_row(row))
    if result['skipped']:
        print(f'skipped after --max-seconds {args.max_seconds:.0f}: {result["skipped"]}')
    print(
        f'matmul fp32 GFLOP/s (best of 10, 2048^3): {result["matmul_gflops"]}; '
        f'wall {time.perf_counter() - start:.0f} s; load {result["machine"]["loadavg_start"]} '
        f'-> {result["machine"]["loadavg_end"]}'
    )
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
