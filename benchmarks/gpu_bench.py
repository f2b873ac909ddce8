"""Real-size Flash-VStream v1 or v2 on one GPU with random weights: encode, memory, answer.

``--model v1`` (default) builds CLIP ViT-L/14 (224 px) + a Llama-2 7B language model in fp16
with RANDOM weights directly on the GPU (no downloads, no checkpoint: speed does not depend on
the weights) through the same backend classes the node uses (``FlashVStreamModel`` on
``v1_format.build_modules``), and the STAR memory of ``flash_vstream_ros.memory`` with the
model's q/k projections. ``--model v2`` builds the shape of Flash-VStream-Qwen-7b (Qwen2-VL-7B:
the 32-layer ViT at 448 px and Qwen2-7B) behind ``QwenVLModel``, with the synopsis memory at
the sizes the checkpoint config gives (60 x 64 + 30 x 256 = 11,520 visual tokens, pre-merger
tokens of 5,120 values) and M-RoPE time positions.

Reports: encode time per frame (640x480 RGB frames, preprocessing included; batch 1 and 8);
memory update time per frame early (frames 11-100) and late (the last 200 frames of a long
stream); answer latency (prefill of the full readout, then a fixed number of greedy tokens, the
end-of-sequence token disabled) with the memory after 10 frames and after all frames; peak GPU
memory. Prints a Markdown table; writes gpu_bench.json to $OUT (or --out) when set.

    python benchmarks/gpu_bench.py                 # on a CUDA machine, about 2-4 minutes
    python benchmarks/gpu_bench.py --model v2      # Flash-VStream-Qwen-7b's shape
    python benchmarks/gpu_bench.py --tiny [--model v2]   # tiny sizes on the CPU (a smoke run)
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

from flash_vstream_ros.config import AppConfig, MemoryConfig, with_overrides
from flash_vstream_ros.engine.readouts import token_layout
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


QWEN2_VL_7B = {  # Qwen/Qwen2-VL-7B-Instruct's config.json (flat layout), as v2 ships it
    'model_type': 'flash_vstream_qwen2_vl',
    'hidden_size': 3584,
    'intermediate_size': 18944,
    'num_hidden_layers': 28,
    'num_attention_heads': 28,
    'num_key_value_heads': 4,
    'vocab_size': 152064,
    'max_position_embeddings': 32768,
    'rms_norm_eps': 1e-6,
    'rope_theta': 1000000.0,
    'tie_word_embeddings': False,
    'hidden_act': 'silu',
    'rope_scaling': {'type': 'mrope', 'mrope_section': [16, 24, 24]},
    'vision_config': {
        'depth': 32,
        'embed_dim': 1280,
        'mlp_ratio': 4,
        'num_heads': 16,
        'in_chans': 3,
        'hidden_size': 3584,
        'patch_size': 14,
        'spatial_merge_size': 2,
        'temporal_patch_size': 2,
        'flash_memory_config': {
            'flash_memory_temporal_length': 120,
            'flash_memory_temporal_method': 'kmeans_ordered',
            'flash_memory_temporal_poolsize': 2,
            'flash_memory_spatial_length': 60,
            'flash_memory_spatial_method': 'klarge_retrieve',
        },
    },
}


def build_v2(tiny: bool, device: torch.device, dtype: torch.dtype) -> Any:
    """Flash-VStream-Qwen-7b's shape (or the tiny checkpoint's) with random weights on device."""
    from flash_vstream_ros.models.qwen2_vl import QwenVLModel
    from flash_vstream_ros.models.qwen_vision import QwenImageSpec
    from flash_vstream_ros.models.tiny_qwen import (
        build_qwen_model,
        build_qwen_tokenizer,
        tiny_qwen_config,
    )

    tokenizer = build_qwen_tokenizer()
    raw = tiny_qwen_config('flash_vstream_qwen', tokenizer) if tiny else dict(QWEN2_VL_7B)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = build_qwen_model(raw).to(dtype)
    finally:
        torch.set_default_dtype(previous)
    qwen = QwenVLModel(model, ModuloTokenizer(tokenizer), raw, QwenImageSpec(), '')
    qwen.decoder.eos_ids = set()  # a fixed number of generated tokens
    return qwen


def memory_config(model: Any) -> MemoryConfig:
    """The memory the engine would run: the checkpoint's overrides (v2: synopsis), else STAR."""
    overrides = model.memory_overrides()
    return with_overrides(AppConfig(), overrides).memory if overrides else MemoryConfig()


NAMES = {
    'v1': 'CLIP ViT-L/14-224 + Llama-2-7B (Flash-VStream-7b, STAR)',
    'v2': 'Qwen2-VL-7B at 448 px (Flash-VStream-Qwen-7b, synopsis)',
}


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


def bench_encode(model: Any, reps: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    out = {}
    for batch in (1, 8):
        times = timed(functools.partial(model.encode, frames[:batch]), model.device, reps)
        out[f'encode_ms_per_frame_b{batch}'] = 1e3 * statistics.median(times) / batch
    return out


def bench_memory_and_answers(
    model: Any, frames: int, new_tokens: int, reps: int
) -> dict[str, Any]:
    from flash_vstream_ros.memory import build_memory

    memory = build_memory(
        memory_config(model),
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


def bench_answer(model: Any, memory: Any, new_tokens: int, reps: int, tag: str) -> dict[str, Any]:
    snap = memory.snapshot()
    readout = snap.readout()
    tokens = readout.tokens
    ctx = PromptContext(  # the layout: each token's frame time, as the engine passes it
        span=snap.span(),
        frames_seen=snap.frames_seen,
        cameras=('cam',),
        layout=token_layout(readout),
    )

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
    parser.add_argument(
        '--model',
        choices=('v1', 'v2'),
        default='v1',
        help='v1: Flash-VStream-7b (CLIP-L + Llama-2-7B, STAR); v2: Flash-VStream-Qwen-7b '
        '(Qwen2-VL-7B, synopsis 11,520 tokens)',
    )
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
    model = (build_v2 if args.model == 'v2' else build_model)(args.tiny, device, dtype)
    sync(device)
    results: dict[str, Any] = {
        'device': torch.cuda.get_device_name(device)
        if device.type == 'cuda'
        else platform.processor() or 'cpu',
        'dtype': str(dtype).replace('torch.', ''),
        'model': ('tiny ' if args.tiny else '') + NAMES[args.model],
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
