"""Tiny random models in the exact on-disk formats of the real ones, built offline once.

* ``flash_vstream``: a v1 checkpoint folder like ``IVGSZ/Flash-VStream-7b`` (config.json with
  ``model_type "vstream"`` and the mm_/compress_/video_ keys, sharded ``pytorch_model-*.bin``
  with ``pytorch_model.bin.index.json``, the CLIP tower embedded, tokenizer files).
* ``llava``: a ``LlavaForConditionalGeneration`` saved with ``save_pretrained`` (+ tokenizer
  with a chat template and ``preprocessor_config.json``).

Sizes: CLIP hidden 64, 2 layers, 224 px, patch 14 (a 16x16 grid); Llama hidden 64, 2 layers.
The tokenizer is a byte-level BPE trained on the spot on a small built-in corpus. Everything
is seeded: two builds give identical weights. They answer nonsense; they exercise every path.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any

import torch

from flash_vstream_ros.errors import ConfigError
from flash_vstream_ros.models import chat_templates
from flash_vstream_ros.models.v1_format import (
    MM_DEFAULTS,
    MODEL_TYPE,
    VISION_PREFIX,
    V1Spec,
    build_modules,
    to_checkpoint_name,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # bump when the tiny models change: a new folder is built
SEED = 0
TINY_FAMILIES = ('flash_vstream', 'llava', 'flash_vstream_qwen', 'qwen2_5_vl')
# tiny_family -> the model family that loads it (the Qwen formats: models/tiny_qwen.py)
LOADED_AS = {'flash_vstream_qwen': 'qwen2_vl', 'qwen2_5_vl': 'qwen2_vl'}
IMAGE_TOKEN = '<image>'
SPECIALS = ['<unk>', '<s>', '</s>', IMAGE_TOKEN]
CORPUS = [
    'A chat between a curious user and an artificial intelligence assistant.',
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    'USER: ASSISTANT: What happened in the video? Where is the red toolbox?',
    'The video memory covers 5 min 3 s (302 frames from camera front), ending now.',
    'A robot drives through a warehouse. A person walks past a shelf with boxes.',
    'The car is parked near the door. There are two people, a dog and a bicycle.',
    'yes no left right up down red green blue black white one two three four five',
    'Café, naïve, über, 東京, 🙂 — unicode text streams byte by byte.',
]
CHAT_TEMPLATE = chat_templates.LLAVA_15  # llava-hf/llava-1.5-7b-hf, as its hub repo has it
CLIP_PREPROCESSOR = {
    'image_processor_type': 'CLIPImageProcessor',
    'do_resize': True,
    'size': {'shortest_edge': 224},
    'do_center_crop': True,
    'crop_size': {'height': 224, 'width': 224},
    'do_rescale': True,
    'rescale_factor': 1 / 255,
    'do_normalize': True,
    'image_mean': [0.48145466, 0.4578275, 0.40821073],
    'image_std': [0.26862954, 0.26130258, 0.27577711],
    'resample': 3,
}


def default_cache_dir() -> Path:
    return Path(os.path.expanduser('~/.cache/flash_vstream_ros'))


def ensure_tiny(cache_dir: str | Path = '', family: str = 'flash_vstream') -> Path:
    """The folder of the tiny model of ``family``, built (atomically) on first use."""
    if family not in TINY_FAMILIES:
        raise ConfigError(f'tiny family must be one of {list(TINY_FAMILIES)}, got {family!r}')
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    final = root / f'tiny-{family}-v{FORMAT_VERSION}'
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{final.name}-', dir=root))
    try:
        _write_tiny(tmp, family)
        os.rename(tmp, final)
        log.info('built the tiny %s model in %s', family, final)
    except OSError:
        if not final.is_dir():  # a concurrent build won the rename: use its folder
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_tiny(folder: Path, family: str) -> None:
    if family in LOADED_AS:
        from flash_vstream_ros.models.tiny_qwen import write_tiny_qwen

        write_tiny_qwen(folder, family)
    elif family == 'flash_vstream':
        write_tiny_v1(folder)
    else:
        write_tiny_llava(folder)


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(with_chat_template: bool = False, bos: bool = True) -> Any:
    """A byte-level BPE tokenizer trained on the built-in corpus.

    ``bos``: Llama-like (BOS prepended); False: Qwen2-like (no BOS token at all).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single='<s> $A', pair='<s> $A <s> $B', special_tokens=[('<s>', tok.token_to_id('<s>'))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token='<s>' if bos else None,
        eos_token='</s>',
        unk_token='<unk>',
        pad_token='<unk>',
        extra_special_tokens={'image_token': IMAGE_TOKEN},
    )
    if with_chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


# --------------------------------------------------------------------------- v1


def tiny_llama_kwargs(vocab_size: int) -> dict[str, Any]:
    return {
        'vocab_size': vocab_size,
        'hidden_size': 64,
        'intermediate_size': 128,
        'num_hidden_layers': 2,
        'num_attention_heads': 4,
        'num_key_value_heads': 4,
        'max_position_embeddings': 16384,  # room for the synopsis default (11,520 tokens)
        'rms_norm_eps': 1e-5,
        'bos_token_id': 1,
        'eos_token_id': 2,
        'pad_token_id': 0,
        'tie_word_embeddings': False,
        'hidden_act': 'silu',
    }


def tiny_vision_config() -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        image_size=224,
        patch_size=14,
        projection_dim=64,
    )


def tiny_v1_config(
    vocab_size: int, vision_tower: str = '', lm_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """config.json of the tiny v1 checkpoint: the real key set, tiny sizes.

    ``lm_overrides``: Llama keys to change, e.g. ``{'num_attention_heads': 2,
    'num_key_value_heads': 2}`` for head_dim 32 (vLLM's CPU attention takes 32, 64, 80, ...).
    """
    cfg: dict[str, Any] = {
        'architectures': ['VStreamLlamaForCausalLM'],
        'model_type': MODEL_TYPE,
        'torch_dtype': 'float32',
    }
    cfg.update(tiny_llama_kwargs(vocab_size))
    cfg.update(lm_overrides or {})
    cfg.update(MM_DEFAULTS)
    cfg.update(
        {
            'mm_hidden_size': 64,
            'tokenizer_model_max_length': 2048,
            'tokenizer_padding_side': 'right',
            'tune_mm_mlp_adapter': False,
            'freeze_mm_mlp_adapter': False,
        }
    )
    if vision_tower:
        cfg['mm_vision_tower'] = vision_tower
    return cfg


def tiny_v1_state(config: dict[str, Any], seed: int = SEED) -> tuple[dict[str, torch.Tensor], Any]:
    """(checkpoint-named state dict with the CLIP tower, the CLIPVisionModel) for ``config``."""
    torch.manual_seed(seed)
    spec = V1Spec.parse(config, 'tiny')
    modules = build_modules(
        spec, tiny_vision_config(), torch.device('cpu'), torch.float32, init=True
    )
    state = {to_checkpoint_name(k): v.detach().clone() for k, v in modules.state_dict().items()}
    return state, modules.vision


def write_shards(
    folder: Path, state: dict[str, torch.Tensor], shards: int = 2, safetensors: bool = False
) -> None:
    """Sharded weights + index, as ``save_pretrained`` of transformers 4.x wrote them."""
    names = list(state)
    per = -(-len(names) // shards)
    weight_map: dict[str, str] = {}
    ext, stem = ('safetensors', 'model') if safetensors else ('bin', 'pytorch_model')
    for i in range(shards):
        part = {k: state[k].contiguous() for k in names[i * per : (i + 1) * per]}
        fname = f'{stem}-{i + 1:05d}-of-{shards:05d}.{ext}'
        if safetensors:
            from safetensors.torch import save_file

            save_file(part, str(folder / fname), metadata={'format': 'pt'})
        else:
            torch.save(part, folder / fname)
        weight_map.update(dict.fromkeys(part, fname))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {'metadata': {'total_size': total}, 'weight_map': weight_map}
    (folder / f'{stem}.{ext}.index.json').write_text(json.dumps(index, indent=2))


def write_tiny_v1(
    folder: Path,
    embed_vision: bool = True,
    safetensors: bool = False,
    vision_tower: str = '',
    seed: int = SEED,
    lm_overrides: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Write a tiny v1 checkpoint into ``folder``; returns the state dict written.

    Without ``embed_vision`` the CLIP tower is saved with ``save_pretrained`` to
    ``vision_tower`` (when given) and left out of the shards.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(str(folder))
    config = tiny_v1_config(len(tokenizer), vision_tower, lm_overrides)
    state, vision = tiny_v1_state(config, seed)
    if not embed_vision:
        state = {k: v for k, v in state.items() if not k.startswith(VISION_PREFIX)}
        if vision_tower:
            vision.save_pretrained(vision_tower)
            (Path(vision_tower) / 'preprocessor_config.json').write_text(
                json.dumps(CLIP_PREPROCESSOR, indent=2)
            )
    (folder / 'config.json').write_text(json.dumps(config, indent=2))
    (folder / 'generation_config.json').write_text(
        json.dumps({'bos_token_id': 1, 'eos_token_id': 2, 'pad_token_id': 0}, indent=2)
    )
    write_shards(folder, state, safetensors=safetensors)
    return state


# --------------------------------------------------------------------------- llava


def write_tiny_llava(
    folder: Path, seed: int = SEED, chat_template: str = CHAT_TEMPLATE, bos: bool = True
) -> Any:
    """A tiny LlavaForConditionalGeneration saved with save_pretrained; returns the model.

    The chat template goes to ``chat_template.json`` (the processor's file, as the llava-hf
    repos have it), not into the tokenizer.
    """
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(bos=bos)
    tokenizer.save_pretrained(str(folder))
    (folder / 'chat_template.json').write_text(json.dumps({'chat_template': chat_template}))
    text = LlamaConfig(**tiny_llama_kwargs(len(tokenizer)))
    config = LlavaConfig(
        vision_config=tiny_vision_config(),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy='default',
        projector_hidden_act='gelu',
        image_seq_length=256,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(str(folder))
    (folder / 'preprocessor_config.json').write_text(json.dumps(CLIP_PREPROCESSOR, indent=2))
    return model
