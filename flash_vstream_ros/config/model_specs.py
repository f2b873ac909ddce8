"""Sizes of the models this package knows, for the GPU memory budget (no torch, no weights).

A :class:`ModelSpec` holds what the budget needs before a model is loaded: its parameter count
and the shapes that set the KV cache and the activations. The budget reads them from the
model's own config.json wherever one is on disk (:mod:`.model_configs`: a local folder or the
Hugging Face hub cache); this table is the fallback for a hub id that is not cached yet.
Shapes come from the published ``config.json`` of each checkpoint; parameter counts are computed
from the shapes (:func:`count_parameters`), so a config read from disk and the table agree:

* Flash-VStream-7b: Vicuna-7B v1.5 (Llama-2-7B: 32 layers, hidden 4096, 32 heads without GQA,
  4k context) + CLIP ViT-L/14 at 224 px + a 1024->4096->4096 MLP projector + abstract-memory
  q/k/v projections: about 7.06B.
* LLaVA-OneVision-Qwen2-0.5B: Qwen2-0.5B (24 layers, hidden 896, 14 heads, 2 KV heads, 32k
  context, tied embeddings) + SigLIP-so400m/14 at 384 px minus its last layer: about 0.89B.
* LLaVA-Interleave-Qwen-0.5B: Qwen1.5-0.5B (24 layers, hidden 1024, 16 heads, 16 KV heads: no
  GQA, so 8x the KV cache per token of Qwen2-0.5B) + the same SigLIP: about 0.86B.
* LLaVA-OneVision-Qwen2-7B: Qwen2-7B (28 layers, hidden 3584, 28 heads, 4 KV heads)
  + the same SigLIP: about 8.0B.
* LLaVA-1.5-7B: Vicuna-7B v1.5 (vocabulary 32064) + CLIP ViT-L/14 at 336 px: about 7.06B.
* Flash-VStream-Qwen-7b and Qwen2-VL-7B: Qwen2-7B (28 x 3584, 28 heads, 4 KV heads, 32k
  context) + the Qwen2-VL ViT (32 x 1280, MLP 5120, patch 14, 2x2 merger 5120 -> 5120 -> LM),
  frames at 448 px: about 8.29B. Qwen2-VL-2B: Qwen2-1.5B (28 x 1536, 12 heads, 2 KV heads,
  tied embeddings) + the same ViT: about 2.21B.
* Qwen2.5-VL-3B: Qwen2.5-3B (36 x 2048, 16 heads, 2 KV heads, tied, 128k context) + the
  Qwen2.5-VL ViT (32 x 1280, gated MLP 3420, RMSNorm, windowed): about 3.75B; Qwen2.5-VL-7B:
  Qwen2.5-7B (as Qwen2-7B, 128k context) + the same ViT: about 8.29B.
* tiny: the random test model (a few million parameters; its loaded size is measured).
"""

from __future__ import annotations

from dataclasses import dataclass


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
    tied_embeddings: bool = False  # the output head shares the input embedding
    qkv_bias: bool = False  # Qwen2-style biases on the q/k/v projections


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
    vocab=152000,  # as llava-onevision-qwen2-0.5b-ov-hf has it (Qwen2: 151936, padded)
    max_context=32768,
    tied_embeddings=True,
    qkv_bias=True,
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
    qkv_bias=True,
)
# Qwen1.5-0.5B as llava-interleave-qwen-0.5b-hf has it (vocabulary padded to 152000).
QWEN15_05B = LanguageModelShape(
    layers=24,
    hidden=1024,
    heads=16,
    kv_heads=16,
    head_dim=64,
    intermediate=2816,
    vocab=152000,
    max_context=32768,
    tied_embeddings=True,
    qkv_bias=True,
)
VICUNA_7B_LLAVA = LanguageModelShape(
    layers=32,
    hidden=4096,
    heads=32,
    kv_heads=32,
    head_dim=128,
    intermediate=11008,
    vocab=32064,  # llava-1.5-7b-hf adds <image> and padding
    max_context=4096,
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
CLIP_L14_336 = EncoderShape(
    image_size=336,
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


# Qwen2-VL-family vision towers at the 448 px frames the qwen2_vl family streams; the memory
# stores pre-merger units (2x2 patches): feature_dim = 4 x the ViT width.
QWEN2_VL_VIT = EncoderShape(
    image_size=448,
    patch=14,
    hidden=1280,
    intermediate=5120,
    heads=16,
    layers=32,
    feature_dim=4 * 1280,
)
QWEN25_VL_VIT = EncoderShape(
    image_size=448,
    patch=14,
    hidden=1280,
    intermediate=3420,
    heads=16,
    layers=32,
    feature_dim=4 * 1280,
)
QWEN2_15B = LanguageModelShape(
    layers=28,
    hidden=1536,
    heads=12,
    kv_heads=2,
    head_dim=128,
    intermediate=8960,
    vocab=151936,
    max_context=32768,
    tied_embeddings=True,
    qkv_bias=True,
)
QWEN25_3B = LanguageModelShape(
    layers=36,
    hidden=2048,
    heads=16,
    kv_heads=2,
    head_dim=128,
    intermediate=11008,
    vocab=151936,
    max_context=128000,
    tied_embeddings=True,
    qkv_bias=True,
)
QWEN25_7B = LanguageModelShape(
    layers=28,
    hidden=3584,
    heads=28,
    kv_heads=4,
    head_dim=128,
    intermediate=18944,
    vocab=152064,
    max_context=128000,
    qkv_bias=True,
)


# --------------------------------------------------------------------------- parameter counts


def lm_parameters(lm: LanguageModelShape) -> int:
    """Weights of a Llama/Qwen2-style decoder: embeddings, head, attention, gated MLP, norms."""
    q, kv = lm.heads * lm.head_dim, lm.kv_heads * lm.head_dim
    attention = lm.hidden * (q + 2 * kv) + q * lm.hidden + (q + 2 * kv if lm.qkv_bias else 0)
    layer = attention + 3 * lm.hidden * lm.intermediate + 2 * lm.hidden
    head = 0 if lm.tied_embeddings else lm.vocab * lm.hidden
    return lm.vocab * lm.hidden + head + lm.layers * layer + lm.hidden


def encoder_parameters(enc: EncoderShape) -> int:
    """Weights of a ViT (CLIP/SigLIP): patch and position embeddings, layers, layer norms."""
    h = enc.hidden
    layer = 4 * (h * h + h) + 2 * h * enc.intermediate + enc.intermediate + h + 4 * h
    embeddings = 3 * enc.patch**2 * h + (enc.tokens + 1) * h
    return embeddings + enc.layers * layer + 4 * h


def projector_parameters(dim_in: int, dim_out: int, depth: int = 2) -> int:
    """An mlp{depth}x_gelu projector (LLaVA's multi_modal_projector has depth 2)."""
    return dim_in * dim_out + dim_out + (depth - 1) * (dim_out * dim_out + dim_out)


def turing_parameters(dim: int, hidden: int) -> int:
    """Flash-VStream's abstract-memory attention: q/k/v (dim->hidden), out (hidden->dim), LN."""
    return 3 * (dim * hidden + hidden) + hidden * dim + dim + 2 * dim


def count_parameters(
    lm: LanguageModelShape, encoder: EncoderShape, projector_depth: int = 2, extra: int = 0
) -> int:
    """All weights of a LLaVA-style model; ``extra``: parts of a family's own (v1 memory)."""
    projector = projector_parameters(encoder.feature_dim, lm.hidden, projector_depth)
    return lm_parameters(lm) + encoder_parameters(encoder) + projector + extra


def sized(name: str, lm: LanguageModelShape, encoder: EncoderShape, extra: int = 0) -> ModelSpec:
    """A spec whose parameter count is computed from its shapes (as from a config.json)."""
    return ModelSpec(name, count_parameters(lm, encoder, extra=extra), lm, encoder)


def qwen_vision_parameters(enc: EncoderShape, out_hidden: int, gated: bool) -> int:
    """Weights of a Qwen2-VL ViT (``gated``: Qwen2.5-VL's SwiGLU MLP and RMSNorms) and its
    PatchMerger (norm, 4w -> 4w -> out_hidden): patch embedding without bias, no position
    table (rotary)."""
    w, i, merged = enc.hidden, enc.intermediate, enc.feature_dim
    norms = 2 * w if gated else 4 * w  # RMSNorm: weight; LayerNorm: weight and bias
    mlp = 3 * w * i + 2 * i + w if gated else 2 * w * i + i + w
    layer = 3 * w * w + 3 * w + w * w + w + mlp + norms
    merger = (w if gated else 2 * w) + merged * merged + merged + merged * out_hidden + out_hidden
    return 3 * 2 * enc.patch**2 * w + enc.layers * layer + merger


def qwen_vl_spec(
    name: str, lm: LanguageModelShape, encoder: EncoderShape, gated: bool
) -> ModelSpec:
    """A Qwen2-VL-family spec, parameters from the shapes."""
    return ModelSpec(
        name, lm_parameters(lm) + qwen_vision_parameters(encoder, lm.hidden, gated), lm, encoder
    )


V1_TURING_HIDDEN = 32  # compress_Turing_hidden_dim of the released checkpoint (its default)
FLASH_VSTREAM_7B = sized(
    'Flash-VStream-7b',
    VICUNA_7B,
    CLIP_L14_224,
    extra=turing_parameters(CLIP_L14_224.feature_dim, V1_TURING_HIDDEN),
)
LLAVA_OV_05B = sized('LLaVA-OneVision-Qwen2-0.5B', QWEN2_05B, SIGLIP_SO400M_384)
LLAVA_INTERLEAVE_05B = sized('LLaVA-Interleave-Qwen-0.5B', QWEN15_05B, SIGLIP_SO400M_384)
LLAVA_OV_7B = sized('LLaVA-OneVision-Qwen2-7B', QWEN2_7B, SIGLIP_SO400M_384)
LLAVA_15_7B = sized('LLaVA-1.5-7B', VICUNA_7B_LLAVA, CLIP_L14_336)
TINY = ModelSpec('tiny', 1_090_000, TINY_LM, TINY_ENCODER)
# model.family demo: SmolLM2-135M-Instruct (torch on the CPU), EfficientNet-Lite0 (a CNN; its
# 7x7x472 map at 224 px, three blocks stacked, is described as a ViT-like shape of equal grid
# and width)
SMOLLM2_135M = LanguageModelShape(
    layers=30,
    hidden=576,
    heads=9,
    kv_heads=3,
    head_dim=64,
    intermediate=1536,
    vocab=49152,
    max_context=8192,
    tied_embeddings=True,
)
LITE0_ENCODER = EncoderShape(
    image_size=224, patch=32, hidden=472, intermediate=1280, heads=1, layers=1, feature_dim=472
)
DEMO = ModelSpec('demo', 139_000_000, SMOLLM2_135M, LITE0_ENCODER)
FLASH_VSTREAM_QWEN_7B = qwen_vl_spec('Flash-VStream-Qwen-7b', QWEN2_7B, QWEN2_VL_VIT, False)
QWEN2_VL_2B = qwen_vl_spec('Qwen2-VL-2B', QWEN2_15B, QWEN2_VL_VIT, False)
QWEN2_VL_7B = qwen_vl_spec('Qwen2-VL-7B', QWEN2_7B, QWEN2_VL_VIT, False)
QWEN25_VL_3B = qwen_vl_spec('Qwen2.5-VL-3B', QWEN25_3B, QWEN25_VL_VIT, True)
QWEN25_VL_7B = qwen_vl_spec('Qwen2.5-VL-7B', QWEN25_7B, QWEN25_VL_VIT, True)

# Lower-case fragments of a hub id or folder name -> spec; the first fragment found wins.
KNOWN_MODELS: tuple[tuple[str, ModelSpec], ...] = (
    ('flash-vstream-7b', FLASH_VSTREAM_7B),
    ('llava-onevision-qwen2-0.5b', LLAVA_OV_05B),
    ('llava-interleave-qwen-0.5b', LLAVA_INTERLEAVE_05B),
    ('llava-onevision-qwen2-7b', LLAVA_OV_7B),
    ('llava-1.5-7b', LLAVA_15_7B),
    ('flash-vstream-qwen', FLASH_VSTREAM_QWEN_7B),
    ('qwen2-vl-2b', QWEN2_VL_2B),
    ('qwen2-vl-7b', QWEN2_VL_7B),
    ('qwen2.5-vl-3b', QWEN25_VL_3B),
    ('qwen2.5-vl-7b', QWEN25_VL_7B),
)


def table_spec(path: str) -> ModelSpec | None:
    """The table's spec for a hub id or folder name, None when no known fragment is in it."""
    name = path.rstrip('/').lower()
    return next((spec for fragment, spec in KNOWN_MODELS if fragment in name), None)
