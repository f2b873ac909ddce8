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
    image_size=224, patch=14, hidden=1024, intermediate=4096, heads=16, feature_dim=1024
)
SIGLIP_SO400M_384 = EncoderShape(
    image_size=384, patch=14, hidden=1152, intermediate=4304, heads=16, feature_dim=1152
)
TINY_LM = LanguageModelShape(
    layers=2,
    hidden=128,
    heads=4,
    kv_heads=4,
    head_dim=32,
    intermediate=256,
    vocab=1024,
    max_context=32768,
)
TINY_ENCODER = EncoderShape(
    image_size=224, patch=14, hidden=64, intermediate=128, heads=4, feature_dim=64
)

FLASH_VSTREAM_7B = ModelSpec('Flash-VStream-7b', 7_063_000_000, VICUNA_7B, CLIP_L14_224)
LLAVA_OV_05B = ModelSpec('LLaVA-OneVision-Qwen2-0.5B', 893_000_000, QWEN2_05B, SIGLIP_SO400M_384)
LLAVA_OV_7B = ModelSpec('LLaVA-OneVision-Qwen2-7B', 8_030_000_000, QWEN2_7B, SIGLIP_SO400M_384)
TINY = ModelSpec('tiny', 5_000_000, TINY_LM, TINY_ENCODER)

# Lower-case fragments of a hub id or folder name -> spec; the first fragment found wins.
KNOWN_MODELS: tuple[tuple[str, ModelSpec], ...] = (
    ('flash-vstream-7b', FLASH_VSTREAM_7B),
    ('llava-onevision-qwen2-0.5b', LLAVA_OV_05B),
    ('llava-interleave-qwen-0.5b', LLAVA_OV_05B),
    ('llava-onevision-qwen2-7b', LLAVA_OV_7B),
)


def find_spec(family: str, path: str) -> ModelSpec:
    """The spec of ``family``/``path``; raises ConfigError naming the known ids."""
    if family == 'tiny' and not path:
        return TINY
    name = path.rstrip('/').lower()
    for fragment, spec in KNOWN_MODELS:
        if fragment in name:
            return spec
    if family == 'tiny':
        return TINY
    known = [fragment for fragment, _ in KNOWN_MODELS]
    raise ConfigError(
        f'no size known for model.path {path!r} (family {family!r}): its GPU memory cannot be '
        f'estimated before loading; known names contain one of {known}'
    )
