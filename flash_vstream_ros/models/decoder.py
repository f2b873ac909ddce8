"""The language-model half of a backend: prompt embeddings in, streamed text out.

A model family owns the vision tower, the projector and the prompt; it builds the prompt as
parts [token ids of the text before, projected memory tokens (N, H), token ids of the text
after] and hands them to a :class:`TextDecoder`. :class:`TorchDecoder` runs the family's own
transformers language model; other decoders (llama.cpp on a GGUF file, a remote
OpenAI-compatible server) take the same parts, so the memory, the readout and the prompt stay
the same whichever one answers. Text stays as ids so that a decoder embeds it with its own
table (a GGUF's ``token_embd``) and can reuse a KV cache for a prefix it has seen.

``positions`` (optional): explicit rotary positions (P, T) of the prompt's T tokens, for models
whose positions are not 0..T-1: Qwen2-VL's M-RoPE (P = 3: time, row, column of each memory
token). Generated tokens continue from the last prompt position + 1. Without it (every other
family) the decoder behaves exactly as before. A decoder that cannot take positions must
refuse them (ModelError) rather than answer with wrong ones; TorchDecoder takes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import torch

from flash_vstream_ros.errors import ModelError
from flash_vstream_ros.models.base import Generation, GenerationRequest, StopCheck, TokenCallback
from flash_vstream_ros.models.generate import generate

# One part of a prompt: token ids, or embedding rows (N, H) in the language model's input space.
PromptPart = list[int] | torch.Tensor


def refuse_positions(positions: torch.Tensor | None, decoder: str, why: str) -> None:
    """The ModelError of a decoder that numbers prompt rows 0..T-1 when given ``positions``."""
    if positions is not None:
        raise ModelError(
            f'model.decoder={decoder} cannot answer with explicit rotary positions (Qwen2-VL '
            f'M-RoPE): {why}; use model.decoder torch for the qwen2_vl family'
        )


class TextDecoder(Protocol):
    """Generates an answer from prompt embeddings."""

    name: str  # what answers, for logs and status: 'torch', 'gguf:<file>', 'remote:<url>'
    eos_ids: set[int]  # tokens that end an answer (empty: always max_new_tokens, benchmarks)

    def generate(
        self,
        prompt: Sequence[PromptPart],
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
        positions: torch.Tensor | None = None,
    ) -> Generation:
        """The prompt's parts, in order -> the answer (``positions``: (P, T) or None)."""
        ...

    def close(self) -> None:
        """Free what the decoder holds (weights, connections)."""
        ...


class TorchDecoder:
    """The family's own transformers causal LM, token by token with a KV cache."""

    name = 'torch'

    def __init__(self, lm: Any, tokenizer: Any, eos_ids: Iterable[int]) -> None:
        self.lm, self.tokenizer, self.eos_ids = lm, tokenizer, set(eos_ids)

    def generate(
        self,
        prompt: Sequence[PromptPart],
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
        positions: torch.Tensor | None = None,
    ) -> Generation:
        return generate(
            self.lm,
            self.embed(prompt).unsqueeze(0),  # (1, T, H)
            self.tokenizer,
            self.eos_ids,
            request,
            on_token,
            should_stop,
            positions,
        )

    def embed(self, prompt: Sequence[PromptPart]) -> torch.Tensor:
        """The parts as one (T, H) tensor: ids through the LM's input embedding table."""
        table = self.lm.get_input_embeddings()
        weight = table.weight
        rows = []
        with torch.inference_mode():
            for part in prompt:
                if isinstance(part, torch.Tensor):
                    rows.append(part.to(weight.device, weight.dtype))  # (N, H)
                else:
                    ids = torch.tensor(part, dtype=torch.long, device=weight.device)  # (T,)
                    rows.append(table(ids))  # (T, H)
            return torch.cat(rows)  # (T, H)

    def close(self) -> None:
        """The weights belong to the model family, which frees them."""
