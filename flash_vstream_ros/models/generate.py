"""Token-by-token generation from input embeddings with a KV cache, streaming text pieces.

Our own short loop (rather than ``generate``) so that cancellation is checked before every
token and each streamed piece is exactly what the final text adds.
"""

from __future__ import annotations

from collections.abc import Iterable
import inspect
from typing import Any

import torch

from flash_vstream_ros.models.base import Generation, GenerationRequest, StopCheck, TokenCallback


class TextStream:
    """Decodes a growing token list and hands out only the new, complete text.

    The pieces handed to ``on_token`` concatenate to the final text (leading spaces dropped);
    each comes with the number of tokens pushed so far, so a caller can report tokens (what
    the answer's ``tokens`` counts) rather than pieces, which may hold several tokens.
    """

    def __init__(self, tokenizer: Any, on_token: TokenCallback | None) -> None:
        self._tokenizer = tokenizer
        self._on_token = on_token
        self.ids: list[int] = []
        self.text = ''

    def push(self, token_id: int) -> None:
        self.ids.append(token_id)
        text = self._decode()
        if text.endswith('\ufffd'):
            return  # an incomplete multi-byte character: wait for the next token
        self._emit(text)

    def finish(self) -> str:
        self._emit(self._decode())
        return self.text

    def _decode(self) -> str:
        return str(self._tokenizer.decode(self.ids, skip_special_tokens=True)).lstrip()

    def _emit(self, text: str) -> None:
        if not text.startswith(self.text):  # a tokenizer re-spaced earlier text: resync
            self.text = text
            return
        piece, self.text = text[len(self.text) :], text
        if piece and self._on_token is not None:
            self._on_token(piece, len(self.ids))


def _cache_arg(model: torch.nn.Module) -> str:
    params = inspect.signature(model.forward).parameters
    return 'cache' if 'cache' in params else 'past_key_values'


def _step(
    model: torch.nn.Module,
    embeds: torch.Tensor,
    cache: Any,
    cache_arg: str,
    positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Any]:
    extra: dict[str, Any] = {cache_arg: cache} if cache is not None else {}
    if positions is not None:
        extra['position_ids'] = positions.unsqueeze(1).to(embeds.device)  # (P, 1, T)
    out = model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1, **extra)
    new_cache = out.get('cache', None)
    if new_cache is None:  # older transformers name it past_key_values
        new_cache = out.get('past_key_values', None)
    return out.logits[0, -1].float(), new_cache  # (V,)


def pick_token(logits: torch.Tensor, request: GenerationRequest) -> int:
    """Greedy (temperature 0) or temperature + nucleus sampling over logits (V,)."""
    if request.temperature <= 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / request.temperature, dim=-1)  # (V,)
    if request.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < request.top_p  # (V,)
        keep[0] = True
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1))


def generate(
    model: Any,
    embeds: torch.Tensor,
    tokenizer: Any,
    eos_ids: Iterable[int],
    request: GenerationRequest,
    on_token: TokenCallback | None = None,
    should_stop: StopCheck | None = None,
    positions: torch.Tensor | None = None,
) -> Generation:
    """Generate from prompt embeddings (1, T, H) of a causal LM with an input embedding table.

    ``positions`` (P, T): explicit rotary positions of the prompt (M-RoPE); each generated
    token then takes the last prompt position + 1, + 2, ... (None: the model counts itself).
    """
    if positions is not None and positions.shape[-1] != embeds.shape[1]:
        raise ValueError(f'positions {tuple(positions.shape)} for {embeds.shape[1]} tokens')
    embed = model.get_input_embeddings()
    stops, stream = set(eos_ids), TextStream(tokenizer, on_token)
    cache_arg, cache, reason = _cache_arg(model), None, 'length'
    with torch.inference_mode():
        for _ in range(request.max_new_tokens):
            if should_stop is not None and should_stop():
                reason = 'cancelled'
                break
            logits, cache = _step(model, embeds, cache, cache_arg, positions)
            if positions is not None:
                positions = positions[:, -1:] + 1  # (P, 1): the next token's position
            token = pick_token(logits, request)
            if token in stops:
                reason = 'eos'
                break
            stream.push(token)
            embeds = embed(torch.tensor([[token]], device=embeds.device))  # (1, 1, H)
    text = stream.finish()
    return Generation(text=text, tokens=len(stream.ids), stop_reason=reason)
