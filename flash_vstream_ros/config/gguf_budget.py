"""The GPU estimate of ``model.decoder: gguf``: a GGUF language model on llama.cpp.

* weights: the GGUF (the file's size when it exists, else the language model's parameters x
  bits per weight of ``model.gguf.quant``: :data:`GGUF_BITS`) beside the torch parts (vision
  tower, projector, memory q/k) in ``model.dtype``;
* KV cache: llama.cpp allocates it for the whole ``model.gguf.n_ctx`` (f16, f32 with kv_f32);
* compute buffer: one ubatch (512 rows) through one layer in f32 (the per-token workspace of
  ``budget.prefill_activation_bytes``) plus that ubatch's attention scores over n_ctx (no flash
  attention: the upper bound) and last-row logits.

On a Jetson CPU and GPU share the memory, so layers left on the CPU (``n_gpu_layers``) count
all the same. The context check uses n_ctx as the model's limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flash_vstream_ros.config.model_configs import encoder_shape, find_spec, lm_shape
from flash_vstream_ros.config.model_specs import LanguageModelShape, ModelSpec, lm_parameters
from flash_vstream_ros.config.settings import AppConfig

if TYPE_CHECKING:
    from flash_vstream_ros.config.budget import ModelInfo

# Bits per weight of a GGUF language model (llama.cpp's mixes: Q4_K_M keeps some tensors Q6_K)
GGUF_BITS = {'f32': 32.0, 'f16': 16.0, 'q8_0': 8.5, 'q4_k_m': 4.85}
GGUF_UBATCH = 512  # rows llama.cpp computes at once (n_ubatch)


def gguf_bytes(lm: LanguageModelShape, quant: str, path: str = '') -> int:
    """Bytes of the language model as GGUF: the file's size when it exists, else estimated."""
    file = Path(path).expanduser() if path else None
    if file is not None and file.is_file():
        return file.stat().st_size
    return int(lm_parameters(lm) * GGUF_BITS[quant] / 8)


def gguf_compute_bytes(lm: LanguageModelShape, n_ctx: int) -> int:
    """llama.cpp's compute buffer (see the module doc)."""
    ubatch = min(n_ctx, GGUF_UBATCH)
    per_row = 6 * lm.hidden + 3 * lm.intermediate + 2 * lm.heads * lm.head_dim
    return ubatch * per_row * 4 + 2 * lm.vocab * 4 + ubatch * n_ctx * lm.heads * 4


def gguf_context_bytes(cfg: AppConfig, lm: LanguageModelShape) -> tuple[int, int, int]:
    """(KV cache bytes, compute buffer bytes, context limit) of ``cfg.model.gguf``."""
    g = cfg.model.gguf
    kv = lm.layers * 2 * lm.kv_heads * lm.head_dim * g.n_ctx * (4 if g.kv_f32 else 2)
    return kv, gguf_compute_bytes(lm, g.n_ctx), min(lm.max_context, g.n_ctx)


def gguf_spec_info(cfg: AppConfig, spec: ModelSpec, dtype_bytes: int) -> ModelInfo:
    """Before loading: the torch parts from the spec, the GGUF by file size or quantisation."""
    from flash_vstream_ros.config.budget import ModelInfo

    g = cfg.model.gguf
    torch_bytes = (spec.parameters - lm_parameters(spec.lm)) * dtype_bytes
    return ModelInfo(
        spec.name,
        torch_bytes + gguf_bytes(spec.lm, g.quant, g.path),
        spec.encoder.feature_dim,
        spec.lm,
        spec.encoder,
        measured=False,
    )


def gguf_model_info(model: Any, cfg: AppConfig) -> ModelInfo:
    """A loaded model: torch parts measured + the GGUF file's size; shapes from the sidecar's
    config (v1: its Llama part; llava: text and vision configs), else the known specs."""
    from flash_vstream_ros.config.budget import ModelInfo

    spec = getattr(model, 'spec', None)
    config = getattr(getattr(model, 'model', None), 'config', None)  # LlavaModel's parts
    if spec is not None and getattr(model.modules, 'vision', None) is not None:
        from transformers import LlamaConfig

        lm = lm_shape(LlamaConfig(**spec.llama_kwargs()))
        encoder = encoder_shape(model.modules.vision.config, int(model.feature_dim))
    elif config is not None and hasattr(config, 'text_config'):
        lm = lm_shape(config.text_config)
        encoder = encoder_shape(config.vision_config, int(model.feature_dim))
    else:
        known = find_spec(cfg.model.family, cfg.model.path)
        lm, encoder = known.lm, known.encoder
    return ModelInfo(
        str(getattr(model, 'name', '') or cfg.model.gguf.path),
        int(model.parameter_bytes()) + Path(cfg.model.gguf.path).expanduser().stat().st_size,
        int(model.feature_dim),
        lm,
        encoder,
        measured=True,
    )
