"""Tiny random Qwen2-VL-family checkpoints in the on-disk formats of the released ones.

* ``flash_vstream_qwen``: like ``zhang9302002/Flash-VStream-Qwen-7b``: config.json with
  ``model_type "flash_vstream_qwen2_vl"``, ``architectures ["FlashVStreamQwen2VLModel"]`` and
  ``vision_config.flash_memory_config``, the flat transformers-4 layout of Qwen2-VL (text keys
  at the top, ``rope_scaling`` with ``mrope_section``); weights as transformers 4 named them
  (``model.layers.*``, ``visual.*``, ``lm_head.*``) in safetensors shards with an index.
* ``qwen2_5_vl``: like ``Qwen/Qwen2.5-VL-3B-Instruct``: the same layout, ``model_type
  "qwen2_5_vl"``, a windowed vision tower (``window_size``, ``fullatt_block_indexes``,
  ``tokens_per_second``).
* ``qwen2_vl``: like ``Qwen/Qwen2-VL-2B-Instruct``.

Each folder also has a tokenizer with Qwen2's special tokens (a byte-level BPE trained on the
spot), the hub's chat template, ``generation_config.json`` and ``preprocessor_config.json``.
Sizes: LM hidden 64 (4 heads of 16, 2 KV heads, M-RoPE sections [2, 3, 3]), 2 layers; ViT
width 32, 2 blocks, patch 14, merge 2. Seeded: two builds give identical weights. The output
rows of the special tokens (EOS, the vision pads, ...) are zero, so a greedy random answer is
text that practically never ends early (a zero logit is never the largest of 400 random ones):
streaming and cancel tests get their tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from flash_vstream_ros.models import chat_templates

QWEN_FORMATS = ('flash_vstream_qwen', 'qwen2_5_vl', 'qwen2_vl')
SPECIALS = [
    '<|endoftext|>',
    '<|im_start|>',
    '<|im_end|>',
    '<|vision_start|>',
    '<|vision_end|>',
    '<|vision_pad|>',
    '<|image_pad|>',
    '<|video_pad|>',
]
V2_FLASH_MEMORY = {
    'flash_memory_temporal_length': 120,
    'flash_memory_temporal_method': 'kmeans_ordered',
    'flash_memory_temporal_poolsize': 2,
    'flash_memory_temporal_pca_dim': 32,
    'flash_memory_spatial_length': 60,
    'flash_memory_spatial_method': 'klarge_retrieve',
}
PREPROCESSOR = {
    'min_pixels': 3136,
    'max_pixels': 12845056,
    'patch_size': 14,
    'temporal_patch_size': 2,
    'merge_size': 2,
    'image_mean': [0.48145466, 0.4578275, 0.40821073],
    'image_std': [0.26862954, 0.26130258, 0.27577711],
    'image_processor_type': 'Qwen2VLImageProcessor',
    'processor_class': 'Qwen2VLProcessor',
}


def build_qwen_tokenizer() -> Any:
    """The tiny byte-level BPE with Qwen2's special tokens; EOS <|im_end|>, no BOS."""
    from flash_vstream_ros.models.tiny import build_tokenizer

    tok = build_tokenizer(bos=False)
    tok.add_tokens(SPECIALS, special_tokens=True)
    tok.eos_token = '<|im_end|>'
    tok.pad_token = '<|endoftext|>'
    tok.chat_template = chat_templates.QWEN2_VL
    return tok


def _ids(tok: Any) -> dict[str, int]:
    def get(token: str) -> int:
        return int(tok.convert_tokens_to_ids(token))

    return {
        'bos_token_id': get('<|endoftext|>'),
        'eos_token_id': get('<|im_end|>'),
        'vision_start_token_id': get('<|vision_start|>'),
        'vision_end_token_id': get('<|vision_end|>'),
        'vision_token_id': get('<|vision_pad|>'),
        'image_token_id': get('<|image_pad|>'),
        'video_token_id': get('<|video_pad|>'),
    }


def special_ids(tok: Any) -> list[int]:
    """Ids of every special token of the tiny tokenizer (its own and Qwen2's)."""
    from flash_vstream_ros.models.tiny import SPECIALS as BASE_SPECIALS

    return sorted({int(tok.convert_tokens_to_ids(t)) for t in [*BASE_SPECIALS, *SPECIALS]})


def tiny_qwen_config(fmt: str, tok: Any) -> dict[str, Any]:
    """config.json of a tiny checkpoint of ``fmt``: the released key set, tiny sizes."""
    cfg: dict[str, Any] = {
        'attention_dropout': 0.0,
        'hidden_act': 'silu',
        'hidden_size': 64,
        'initializer_range': 0.02,
        'intermediate_size': 128,
        'max_position_embeddings': 32768,
        'max_window_layers': 2,
        'num_attention_heads': 4,
        'num_hidden_layers': 2,
        'num_key_value_heads': 2,
        'rms_norm_eps': 1e-6,
        'rope_theta': 1000000.0,
        'sliding_window': 32768,
        'tie_word_embeddings': False,
        'torch_dtype': 'float32',
        'transformers_version': '4.45.0.dev0',
        'use_cache': True,
        'use_sliding_window': False,
        'vocab_size': len(tok),
        'rope_scaling': {'type': 'mrope', 'mrope_section': [2, 3, 3]},
        **_ids(tok),
    }
    vision: dict[str, Any] = {
        'depth': 2,
        'in_chans': 3,
        'patch_size': 14,
        'spatial_merge_size': 2,
        'spatial_patch_size': 14,
        'temporal_patch_size': 2,
    }
    if fmt == 'qwen2_5_vl':
        vision.update(
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            hidden_act='silu',
            window_size=112,
            fullatt_block_indexes=[1],
            tokens_per_second=2,
        )
        cfg.update(model_type='qwen2_5_vl', architectures=['Qwen2_5_VLForConditionalGeneration'])
    else:
        vision.update(
            embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2, hidden_act='quick_gelu'
        )
        cfg.update(model_type='qwen2_vl', architectures=['Qwen2VLForConditionalGeneration'])
    if fmt == 'flash_vstream_qwen':
        vision['flash_memory_config'] = dict(V2_FLASH_MEMORY)
        cfg.update(model_type='flash_vstream_qwen2_vl', architectures=['FlashVStreamQwen2VLModel'])
    cfg['vision_config'] = vision
    return cfg


def legacy_name(name: str) -> str:
    """A transformers-5 parameter name as the released (transformers-4) checkpoints have it."""
    if name.startswith('model.language_model.'):
        return 'model.' + name[len('model.language_model.') :]
    if name.startswith('model.visual.'):
        return name[len('model.') :]
    return name


def build_qwen_model(cfg: dict[str, Any], seed: int = 0) -> Any:
    """A random transformers model for the config dict (v2 built as the Qwen2-VL it is)."""
    import transformers

    cls_name = (
        'Qwen2_5_VLForConditionalGeneration'
        if cfg['model_type'] == 'qwen2_5_vl'
        else ('Qwen2VLForConditionalGeneration')
    )
    cls = getattr(transformers, cls_name)
    config = cls.config_class.from_dict({k: v for k, v in cfg.items() if k != 'model_type'})
    torch.manual_seed(seed)
    return cls(config).eval()


def write_tiny_qwen(folder: Path, fmt: str = 'flash_vstream_qwen', seed: int = 0) -> Any:
    """Write a tiny checkpoint of ``fmt`` into ``folder``; returns the model it holds."""
    from flash_vstream_ros.models.tiny import write_shards

    if fmt not in QWEN_FORMATS:
        raise ValueError(f'fmt must be one of {QWEN_FORMATS}, got {fmt!r}')
    folder.mkdir(parents=True, exist_ok=True)
    tok = build_qwen_tokenizer()
    tok.save_pretrained(str(folder))
    cfg = tiny_qwen_config(fmt, tok)
    model = build_qwen_model(cfg, seed)
    with torch.no_grad():  # never greedy-picked: random answers are text, to max_new_tokens
        model.lm_head.weight[special_ids(tok)] = 0.0
    state = {legacy_name(k): v.detach().clone() for k, v in model.state_dict().items()}
    write_shards(folder, state, shards=2, safetensors=True)
    (folder / 'config.json').write_text(json.dumps(cfg, indent=2))
    ids = _ids(tok)
    generation = {
        'bos_token_id': ids['bos_token_id'],
        'eos_token_id': [ids['eos_token_id'], ids['bos_token_id']],
        'pad_token_id': ids['bos_token_id'],
    }
    (folder / 'generation_config.json').write_text(json.dumps(generation, indent=2))
    (folder / 'preprocessor_config.json').write_text(json.dumps(PREPROCESSOR, indent=2))
    (folder / 'chat_template.json').write_text(
        json.dumps({'chat_template': chat_templates.QWEN2_VL})
    )
    return model
