"""Sizes of the models this package knows, for the GPU memory budget (no torch, no weights).

A :class:`ModelSpec` holds what the budget needs before a model is loaded: its parameter count
and the shapes that set the KV cache and the activations. Figures come from the published model
configurations (``config.json`` of each checkpoint):

* Flash-VStream-7b: Vicuna-7B v1.5 (Llama-2-7B: 6.74B, 32 layers, hidden 4096, 32 heads without
  GQA, 4k context) + CLIP ViT-L/14 at 224 px (0.30B) + a 1024->4096->4096 MLP projector (21M)
  + abstract-memory q/k projections: about 7.06B.
* LLaVA-OneVision-Qwen2-0.5B: Qwen2-0.5B (0.49B, 24 layers, hidden 896, 14 heads, 2 KV heads,
  32k context) + SigLIP-so400m/14 at 384 px minus its last layer (0.40B) + projector (2M):
  about 0.89B.
* LLaVA-OneVision-Qwen2-7B: Qwen2-7B (7.62B, 28 layers, hidden 3584, 28 heads, 4 KV heads)
  + the same SigLIP: about 8.03B.
* tiny: the random test model (a few million parameters; its loaded size is measured).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path
from typing import Any

from flash_vstream_ros.errors import ConfigError


@dataclass(frozen=True)
class LanguageModelShape:
    """What sets the KV cache and the prefill workspace of a decoder-only language model."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int  # < heads with grouped-query attention
    head_dim: int
    intermediate: int  # MLP width
    vocab: int
    max_context: int  # tokens


@dataclass(frozen=True)
class EncoderShape:
    """A ViT vision encoder at its input resolution."""

    image_size: int  # pixels, square
    patch: int
    hidden: int
    intermediate: int
    heads: int
    layers: int  # all of their outputs are kept while encoding (output_hidden_states)
    feature_dim: int  # width of the maps the memory stores (the encoder's hidden size)

    @property
    def tokens(self) -> int:
        """Sequence length per frame: patches plus a class token."""
        return (self.image_size // self.patch) ** 2 + 1


@dataclass(frozen=True)
class ModelSpec:
    """A model family member: parameter count and shapes."""

    name: str
    parameters: int  # all weights: vision encoder + projector + language model
    lm: LanguageModelShape
    encoder: EncoderShape


VICUNA_7B = LanguageModelShape(
    layers=32,
    hidden=4096,
    heads=32,
    kv_heads=32,
    head_dim=128,
    intermediate=11008,
    vocab=32000,
    max_context=4096,
)
QWEN2_05B = LanguageModelShape(
    layers=24,
    hidden=896,
    heads=14,
    kv_heads=2,
    head_dim=64,
    intermediate=4864,
    vocab=151936,
    max_context=32768,
)
QWEN2_7B = LanguageModelShape(
    layers=28,
    hidden=3584,
    heads=28,
    kv_heads=4,
    head_dim=128,
    intermediate=18944,
    vocab=152064,
    max_context=32768,
)
CLIP_L14_224 = EncoderShape(
    image_size=224,
    patch=14,
    hidden=1024,
    intermediate=4096,
    heads=16,
    layers=24,
    feature_dim=1024,
)
SIGLIP_SO400M_384 = EncoderShape(
    image_size=384,
    patch=14,
    hidden=1152,
    intermediate=4304,
    heads=16,
    layers=26,
    feature_dim=1152,
)
# models/tiny.py: Llama 2 x 64 (4 heads, 2k context, 400-token vocabulary), CLIP 2 x 64 at 224.
TINY_LM = LanguageModelShape(
    layers=2,
    hidden=64,
    heads=4,
    kv_heads=4,
    head_dim=16,
    intermediate=128,
    vocab=400,
    max_context=16384,
)
TINY_ENCODER = EncoderShape(
    image_size=224, patch=14, hidden=64, intermediate=128, heads=1, layers=2, feature_dim=64
)

FLASH_VSTREAM_7B = ModelSpec('Flash-VStream-7b', 7_063_000_000, VICUNA_7B, CLIP_L14_224)
LLAVA_OV_05B = ModelSpec('LLaVA-OneVision-Qwen2-0.5B', 893_000_000, QWEN2_05B, SIGLIP_SO400M_384)
LLAVA_OV_7B = ModelSpec('LLaVA-OneVision-Qwen2-7B', 8_030_000_000, QWEN2_7B, SIGLIP_SO400M_384)
TINY = ModelSpec('tiny', 1_090_000, TINY_LM, TINY_ENCODER)

# Lower-case fragments of a hub id or folder name -> spec; the first fragment found wins.
KNOWN_MODELS: tuple[tuple[str, ModelSpec], ...] = (
    ('flash-vstream-7b', FLASH_VSTREAM_7B),
    ('llava-onevision-qwen2-0.5b', LLAVA_OV_05B),
    ('llava-interleave-qwen-0.5b', LLAVA_OV_05B),
    ('llava-onevision-qwen2-7b', LLAVA_OV_7B),
)


def find_spec(family: str, path: str) -> ModelSpec:
    """The spec of ``family``/``path``: tiny, a known hub id or folder name, or a local
    checkpoint folder's config.json; raises ConfigError naming the known ids."""
    if family == 'tiny':
        return TINY
    name = path.rstrip('/').lower()
    for fragment, spec in KNOWN_MODELS:
        if fragment in name:
            return spec
    folder = Path(path).expanduser()
    local = spec_from_folder(folder) if path and folder.is_dir() else None
    if local is not None:
        return local
    known = [fragment for fragment, _ in KNOWN_MODELS]
    raise ConfigError(
        f'no size known for model.path {path!r} (family {family!r}): its GPU memory cannot be '
        f'estimated before loading; known names contain one of {known}'
    )


# --------------------------------------------------------------------------- from configs


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """A key of a config.json dict or an attribute of a transformers config object."""
    value = cfg.get(key, default) if isinstance(cfg, dict) else getattr(cfg, key, default)
    return default if value is None else value


def lm_shape(cfg: Any) -> LanguageModelShape:
    """The shape of a decoder from its transformers text config (object or dict)."""
    heads = int(_get(cfg, 'num_attention_heads'))
    hidden = int(_get(cfg, 'hidden_size'))
    return LanguageModelShape(
        layers=int(_get(cfg, 'num_hidden_layers')),
        hidden=hidden,
        heads=heads,
        kv_heads=int(_get(cfg, 'num_key_value_heads', heads)),
        head_dim=int(_get(cfg, 'head_dim', hidden // heads)),
        intermediate=int(_get(cfg, 'intermediate_size')),
        vocab=int(_get(cfg, 'vocab_size')),
        max_context=int(_get(cfg, 'max_position_embeddings', 4096)),
    )


def encoder_shape(cfg: Any, feature_dim: int) -> EncoderShape:
    """The shape of a ViT from its transformers vision config (object or dict)."""
    return EncoderShape(
        image_size=int(_get(cfg, 'image_size', 224)),
        patch=int(_get(cfg, 'patch_size', 14)),
        hidden=int(_get(cfg, 'hidden_size')),
        intermediate=int(_get(cfg, 'intermediate_size')),
        heads=int(_get(cfg, 'num_attention_heads')),
        layers=int(_get(cfg, 'num_hidden_layers')),
        feature_dim=feature_dim,
    )


CHECKPOINT_DTYPE_BYTES = {'float32': 4, 'float16': 2, 'bfloat16': 2}


def spec_from_folder(folder: Path) -> ModelSpec | None:
    """A spec read from a local checkpoint's config.json and weight files, None if unreadable.

    LLaVA-style configs carry ``text_config``/``vision_config``; a Flash-VStream v1 config is a
    Llama config with ``mm_*`` keys (its CLIP tower is CLIP ViT-L/14 unless stated otherwise).
    Parameters: the weight files' bytes over the checkpoint dtype's size.
    """
    path = folder / 'config.json'
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
        text = cfg.get('text_config', cfg)
        lm = lm_shape(text)
        if 'vision_config' in cfg:
            vision = cfg['vision_config']
            encoder = encoder_shape(vision, int(_get(vision, 'hidden_size')))
        else:
            encoder = CLIP_L14_224
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f'cannot read the model shapes from {path}: {exc}') from exc
    dtype = str(cfg.get('torch_dtype') or text.get('torch_dtype') or 'float16')
    weights = sum(f.stat().st_size for ext in ('*.safetensors', '*.bin') for f in folder.glob(ext))
    params = weights // CHECKPOINT_DTYPE_BYTES.get(dtype, 2)
    return ModelSpec(folder.name, params, lm, encoder)
