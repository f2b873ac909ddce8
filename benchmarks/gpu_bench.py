"""Real-size Flash-VStream v1 on one GPU with random weights: encode, memory update, answer.

Builds CLIP ViT-L/14 (224 px) + a Llama-2 7B language model in fp16 with RANDOM weights
directly on the GPU (no downloads, no checkpoint: speed does not depend on the weights) through
the same backend classes the node uses (``FlashVStreamModel`` on ``v1_format.build_modules``),
and the STAR memory of ``flash_vstream_ros.memory`` with the model's q/k projections.

Reports: encode time per frame (640x480 RGB frames, preprocessing included; batch 1 and 8);
memory update time per frame early (frames 11-100) and late (the last 200 frames of a long
stream); answer latency (prefill of the full readout, then a fixed number of greedy tokens, the
end-of-sequence token disabled) with the memory after 10 frames and after all frames; peak GPU
memory. Prints a Markdown table; writes gpu_bench.json to $OUT (or --out) when set.

    python benchmarks/gpu_bench.py                 # on a CUDA machine, about 2-4 minutes
    python benchmarks/gpu_bench.py --tiny          # tiny sizes on the CPU (a smoke run)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import functools
import json
import os
from pathlib import Path
import platform
import statistics
import sys
import time
from typing import Any

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the source tree wins

import numpy as np
import torch

from flash_vstream_ros.config import MemoryConfig
from flash_vstream_ros.models.base import GenerationRequest, PromptContext
from flash_vstream_ros.models.flash_vstream import FlashVStreamModel
from flash_vstream_ros.models.preprocess import ImageSpec
from flash_vstream_ros.models.tiny import (
    build_tokenizer,
    tiny_v1_config,
    tiny_vision_config,
)
from flash_vstream_ros.models.v1_format import MM_DEFAULTS, V1Spec, build_modules

LLAMA2_7B = {
    'vocab_size': 32000,
    'hidden_size': 4096,
    'intermediate_size': 11008,
    'num_hidden_layers': 32,
    'num_attention_heads': 32,
    'num_key_value_heads': 32,
    'max_position_embeddings': 4096,
    'rms_norm_eps': 1e-5,
    'bos_token_id': 1,
    'eos_token_id': 2,
    'pad_token_id': 0,
    'tie_word_embeddings': False,
    'hidden_act': 'silu',
}


class ModuloTokenizer:
    """The tiny offline tokenizer for a 32k-vocabulary model: decodes ids modulo its size."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.size = inner, len(inner)
        self.eos_token_id = inner.eos_token_id

    def __call__(self, text: str, add_special_tokens: bool = True) -> Any:
        return self.inner(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return str(self.inner.decode([i % self.size for i in ids], skip_special_tokens=True))


def build_model(tiny: bool, device: torch.device, dtype: torch.dtype) -> FlashVStreamModel:
    """The v1 model with random weights, built on ``device``."""
    from transformers import CLIPVisionConfig

    tokenizer = build_tokenizer()
    if tiny:
        config, vision = tiny_v1_config(len(tokenizer)), tiny_vision_config()
    else:
        config = {'model_type': 'vstream', **LLAMA2_7B, **MM_DEFAULTS}
        vision = CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
            projection_dim=768,
        )
    spec = V1Spec.parse(config, 'gpu_bench')
    torch.manual_seed(0)
    modules = build_modules(spec, vision, device, dtype, init=True)
    model = FlashVStreamModel(spec, modules, ModuloTokenizer(tokenizer), ImageSpec(224, 224))
    model.decoder.eos_ids = set()  # a fixed number of generated tokens
    return model


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, reps: int) -> list[float]:
    """Seconds per call, after one warm-up call."""
    fn()
    out = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def bench_encode(model: FlashVStreamModel, reps: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    out = {}
    for batch in (1, 8):
        times = timed(functools.partial(model.encode, frames[:batch]), model.device, reps)
        out[f'encode_ms_per_frame_b{batch}'] = 1e3 * statistics.median(times) / batch
    return out


def bench_memory_and_answers(
    model: FlashVStreamModel, frames: int, new_tokens: int, reps: int
) -> dict[str, Any]:
    from flash_vstream_ros.memory import build_memory

    memory = build_memory(
        MemoryConfig(),
        model.feature_dim,
        qk=model.memory_qk(),
        device=model.device,
        dtype=model.dtype,
    )
    gen = torch.Generator(device=model.device).manual_seed(0)
    shape = (*model.feature_grid, model.feature_dim)
    out: dict[str, Any] = {}
    update_s: list[float] = []
    for i in range(frames):
        fmap = torch.randn(shape, generator=gen, device=model.device, dtype=model.dtype)
        sync(model.device)
        start = time.perf_counter()
        memory.update(fmap, i * 100_000_000, 'cam')  # 10 Hz stamps, ns
        sync(model.device)
        update_s.append(time.perf_counter() - start)
        if i + 1 == 10:
            out.update(bench_answer(model, memory, new_tokens, reps, 'after_10'))
    out['update_ms_frames_11_100'] = 1e3 * statistics.median(update_s[10:100])
    out[f'update_ms_last_200_of_{frames}'] = 1e3 * statistics.median(update_s[-200:])
    out.update(bench_answer(model, memory, new_tokens, reps, f'after_{frames}'))
    out['memory_bytes'] = memory.snapshot().nbytes
    return out


def bench_answer(
    model: FlashVStreamModel, memory: Any, new_tokens: int, reps: int, tag: str
) -> dict[str, Any]:
    snap = memory.snapshot()
    tokens = snap.readout().tokens
    ctx = PromptContext(span=snap.span(), frames_seen=snap.frames_seen, cameras=('cam',))

    def ask(n: int) -> Any:
        return model.answer(
            tokens, 'What happened in the video?', ctx, GenerationRequest(max_new_tokens=n)
        )

    first = timed(lambda: ask(1), model.device, reps)
    full = timed(lambda: ask(new_tokens), model.device, reps)
    per_token = (statistics.median(full) - statistics.median(first)) / max(1, new_tokens - 1)
    return {
        f'visual_tokens_{tag}': int(tokens.shape[0]),
        f'first_token_s_{tag}': statistics.median(first),
        f'answer_s_{tag}': statistics.median(full),
        f'decode_ms_per_token_{tag}': 1e3 * per_token,
    }


def table(results: dict[str, Any]) -> str:
    lines = ['| measure | value |', '|---|---|']
    for key, value in results.items():
        text = f'{value:.4g}' if isinstance(value, float) else str(value)
        lines.append(f'| {key} | {text} |')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tiny', action='store_true', help='tiny sizes on the CPU (smoke run)')
    parser.add_argument('--frames', type=int, default=1200, help='frames folded into memory')
    parser.add_argument('--new-tokens', type=int, default=48, help='generated tokens/answer')
    parser.add_argument('--reps', type=int, default=5, help='timed repetitions per figure')
    parser.add_argument('--out', default=os.environ.get('OUT', ''), help='folder for JSON')
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        sys.exit('gpu_bench: no CUDA device (use --tiny for a CPU smoke run)')
    device = torch.device('cpu' if args.tiny else 'cuda')
    dtype = torch.float32 if args.tiny else torch.float16
    if args.tiny:
        torch.set_num_threads(1)
    start = time.perf_counter()
    model = build_model(args.tiny, device, dtype)
    sync(device)
    results: dict[str, Any] = {
        'device': torch.cuda.get_device_name(device)
        if device.type == 'cuda'
        else platform.processor() or 'cpu',
        'dtype': str(dtype).replace('torch.', ''),
        'model': 'tiny' if args.tiny else 'CLIP ViT-L/14-224 + Llama-2-7B',
        'build_s': time.perf_counter() - start,
        'parameter_gb': model.parameter_bytes() / 1e9,
    }
    results.update(bench_encode(model, args.reps))
    results.update(bench_memory_and_answers(model, args.frames, args.new_tokens, args.reps))
    if device.type == 'cuda':
        results['peak_gpu_memory_gb'] = torch.cuda.max_memory_allocated(device) / 1e9
    results['total_s'] = time.perf_counter() - start
    print(table(results))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / 'gpu_bench.json').write_text(json.dumps(results, indent=2))


if __name__ == '__main__':
    main()
