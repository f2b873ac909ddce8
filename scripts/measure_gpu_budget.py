"""Measure on a CUDA GPU what the budget estimates: weights, encoder and answer memory.

Builds random models with the real shapes (no weights needed) in fp16: Qwen2-0.5B + SigLIP-so400m
(LLaVA-OneVision-0.5B, the Orin profiles) and Vicuna-7B + CLIP ViT-L/14 + projector
(Flash-VStream-7b). For each: weights (allocated after building), the encoder's peak on a batch
of 1920x1080 uint8 frames resized and normalised on the GPU, and a generation's peak above the
weights (visual + prompt tokens as inputs_embeds, max_new_tokens forced), then prints them beside
flash_vstream_ros.config.budget's estimate of the matching profile. Needs CUDA and transformers.

    python scripts/measure_gpu_budget.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flash_vstream_ros.config import AppConfig, budget, budget_parts, load_yaml, profiles

MIB = 1 << 20


def _lm_and_encoder(name: str) -> tuple[Any, Any, int]:
    import transformers as tf

    if name == 'orin_nano':
        lm_cfg: Any = tf.Qwen2Config(
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        )
        enc_cfg: Any = tf.SiglipVisionConfig(
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=26,
            num_attention_heads=16,
            image_size=384,
            patch_size=14,
        )
        return tf.Qwen2ForCausalLM(lm_cfg), tf.SiglipVisionModel(enc_cfg), 384
    lm_cfg = tf.LlamaConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
    )
    enc_cfg = tf.CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
    )
    return tf.LlamaForCausalLM(lm_cfg), tf.CLIPVisionModel(enc_cfg), 224


def _encode(encoder: Any, side: int, batch: int) -> None:
    frames = torch.randint(0, 255, (batch, 1080, 1920, 3), dtype=torch.uint8)
    x = frames.pin_memory().cuda(non_blocking=True).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8
    x = F.interpolate(x.float(), size=(side, side), mode='bilinear', antialias=True)
    x = ((x / 255.0 - 0.5) / 0.5).half()  # (B, 3, side, side)
    with torch.inference_mode():
        encoder(pixel_values=x, output_hidden_states=True)  # as the backends call it


def _generate(lm: Any, tokens: int, new_tokens: int) -> None:
    embeds = torch.randn(1, tokens, lm.config.hidden_size, device='cuda', dtype=torch.float16)
    mask = torch.ones(1, tokens, device='cuda', dtype=torch.long)
    with torch.inference_mode():
        out = lm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
    assert out.shape[1] == new_tokens, out.shape


def _peak_above(fn: Any, *args: Any) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn(*args)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def measure(name: str) -> dict[str, Any]:
    cfg = load_yaml(profiles.PROFILES_DIR / f'{name}.yaml', AppConfig)
    est = budget.estimate(cfg, device='cuda')
    torch.set_default_dtype(torch.float16)
    with torch.device('cuda'):
        lm, encoder, side = _lm_and_encoder(name)
        projector = (
            torch.nn.Sequential(
                torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096)
            )
            if name != 'orin_nano'
            else None
        )
    torch.set_default_dtype(torch.float32)
    lm.eval()
    encoder.eval()
    params = sum(
        p.numel() for m in (lm, encoder, projector) if m is not None for p in m.parameters()
    )
    weights = torch.cuda.memory_allocated()
    prompt = est.context_tokens - cfg.generation.max_new_tokens
    enc_peak = _peak_above(_encode, encoder, side, cfg.engine.max_encode_batch)
    gen_peak = _peak_above(_generate, lm, prompt, cfg.generation.max_new_tokens)
    enc_est = budget_parts.encoder_activation_bytes(
        est_encoder(name), cfg.engine.max_encode_batch, 2
    )
    row = {
        'profile': name,
        'parameters_built': params,
        'weights_mib': weights / MIB,
        'weights_est_mib': est.weights / MIB,
        'encoder_peak_mib': enc_peak / MIB,
        'encoder_est_mib': enc_est / MIB,
        'answer_peak_mib': gen_peak / MIB,
        'answer_est_mib': (est.kv_cache + est.activations - enc_est) / MIB,
        'context_tokens': est.context_tokens,
    }
    del lm, encoder, projector
    torch.cuda.empty_cache()
    return row


def est_encoder(name: str) -> Any:
    from flash_vstream_ros.config.model_specs import CLIP_L14_224, SIGLIP_SO400M_384

    return SIGLIP_SO400M_384 if name == 'orin_nano' else CLIP_L14_224


def context_overhead_mib() -> float:
    """Device memory in use that the caching allocator does not account (CUDA context, cuBLAS)."""
    a = torch.randn(1024, 1024, device='cuda', dtype=torch.float16)
    (a @ a).sum().item()
    free, total = torch.cuda.mem_get_info()
    return (total - free - torch.cuda.memory_reserved()) / MIB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print('needs CUDA', file=sys.stderr)
        return 2
    result: dict[str, Any] = {
        'device': torch.cuda.get_device_name(),
        'torch': torch.__version__,
        'context_overhead_mib': context_overhead_mib(),
        'rows': [],
    }
    for name in ('orin_nano', 'agx_orin'):
        result['rows'].append(measure(name))
        print(json.dumps(result['rows'][-1]), flush=True)
    print(json.dumps({k: v for k, v in result.items() if k != 'rows'}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
