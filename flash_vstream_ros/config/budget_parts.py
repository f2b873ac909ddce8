"""The GPU budget's arithmetic of one part: KV cache, activations, released weights (bytes).

Pure functions of a model's shapes (:mod:`.model_specs`); :mod:`.budget` adds them up.
"""

from __future__ import annotations

from flash_vstream_ros.config.model_specs import EncoderShape, LanguageModelShape, lm_parameters

MAX_FRAME_PIXELS = 1920 * 1080  # the largest frame the activation estimate plans for


def kv_cache_bytes(lm: LanguageModelShape, tokens: int, dtype_bytes: int) -> int:
    """KV cache of one sequence of ``tokens`` (keys and values, every layer)."""
    return lm.layers * 2 * lm.kv_heads * lm.head_dim * tokens * dtype_bytes


def encoder_activation_bytes(enc: EncoderShape, batch: int, dtype_bytes: int) -> int:
    """The encoder on a batch: uploaded frames and their float copies, the hidden states of
    every layer (the backends ask for output_hidden_states) and one layer's workspace."""
    frames = batch * MAX_FRAME_PIXELS * 3 * (1 + 4)  # uint8 upload + float32 resize input
    kept = (enc.layers + 1) * enc.hidden
    work = 6 * enc.hidden + 2 * enc.intermediate
    return frames + batch * enc.tokens * (kept + work) * dtype_bytes


def prefill_activation_bytes(lm: LanguageModelShape, tokens: int, dtype_bytes: int) -> int:
    """One decoder layer over the whole prompt (SDPA attention) and last-token fp32 logits."""
    per_token = 6 * lm.hidden + 3 * lm.intermediate + 2 * lm.heads * lm.head_dim
    return tokens * per_token * dtype_bytes + 2 * lm.vocab * 4


def released_lm_bytes(lm: LanguageModelShape, dtype_bytes: int) -> int:
    """The language model's weights but its input embedding table (what remote releases)."""
    return (lm_parameters(lm) - lm.vocab * lm.hidden) * dtype_bytes
