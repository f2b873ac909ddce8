"""A TextDecoder that has an OpenAI-compatible server (vLLM) run the language model.

The robot keeps the vision tower, the projector, the memory and the language model's input
embedding table; it embeds the prompt's text parts with that table, joins them with the
projected memory tokens into one (T, H) tensor and sends it as ``prompt_embeds`` (base64 of
``torch.save`` of the tensor, what vLLM's ``--enable-prompt-embeds`` takes) to
``/v1/completions`` with ``stream: true``. The answer streams back as server-sent events; each
piece goes to ``on_token`` as the local decoder gives it (leading spaces dropped). A cancel
(``should_stop``) shuts the connection down, which makes vLLM abort the request. The server
never sees a token id of the prompt, so it needs no tokenizer of ours and no vision part.

Greedy answers equal the local decoder's: eos is the same token set (sent as
``stop_token_ids``; ``ignore_eos`` when the set is empty, as benchmarks use it), the server
detokenizes with special tokens skipped as the local stream does. Models whose rotary
positions are not 0..T-1 (qwen2_vl's M-RoPE) cannot be served this way: their positions are
refused with a ModelError rather than answered with wrong ones.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
import io
import logging
import os
from pathlib import Path
import threading
from typing import Any

import torch

from flash_vstream_ros.config import RemoteConfig
from flash_vstream_ros.errors import ConfigError, ModelError
from flash_vstream_ros.models.base import Generation, GenerationRequest, StopCheck, TokenCallback
from flash_vstream_ros.models.decoder import PromptPart, TextDecoder, refuse_positions
from flash_vstream_ros.models.remote_http import Endpoint, EventStream, RemoteError, get_json

log = logging.getLogger(__name__)
WIRE_DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}
STOP_POLL_S = 0.05  # how often a running answer checks should_stop while the server is quiet
FINISH = {'stop': 'eos', 'length': 'length'}  # OpenAI finish_reason -> Generation.stop_reason

Embed = Callable[[Sequence[PromptPart]], torch.Tensor]  # parts -> (T, H)


def read_api_key(settings: RemoteConfig) -> str | None:
    """The API key from ``api_key_file`` (first line) or the ``api_key_env`` variable.

    A file that is named but unreadable or empty, or a variable that is named but unset, is a
    ConfigError (a key the operator meant to give must not be dropped silently). The messages
    name the file or the variable, never the key.
    """
    if settings.api_key_file:
        path = Path(settings.api_key_file).expanduser()
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f'model.remote.api_key_file {str(path)!r}: {exc}') from exc
        key = lines[0].strip() if lines else ''
        if not key:
            raise ConfigError(f'model.remote.api_key_file {str(path)!r} is empty')
        return key
    if settings.api_key_env:
        key = os.environ.get(settings.api_key_env, '').strip()
        if not key:
            raise ConfigError(
                f'model.remote.api_key_env names {settings.api_key_env!r}, which is not set'
            )
        return key
    return None


def encode_embeds(embeds: torch.Tensor, dtype: torch.dtype | None = None) -> str:
    """(T, H) -> base64 of ``torch.save`` of a compact CPU copy (not a view of a larger one)."""
    t = embeds.detach().to('cpu', dtype or embeds.dtype).contiguous().clone()  # (T, H)
    buf = io.BytesIO()
    torch.save(t, buf)
    return base64.b64encode(buf.getvalue()).decode('ascii')


class RemoteDecoder:
    """Prompt embeddings to an OpenAI-compatible ``/v1/completions``; text streamed back."""

    def __init__(
        self,
        settings: RemoteConfig,
        embed: Embed,
        eos_ids: Iterable[int],
        fallback: TextDecoder | None = None,
        api_key: str | None = None,
    ) -> None:
        if not settings.url:
            raise ConfigError('model.remote.url is empty')
        self.settings, self.embed, self.eos_ids = settings, embed, set(eos_ids)
        self.fallback = fallback
        self.endpoint = Endpoint.parse(
            settings.url,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.timeout_s,
            ca_file=settings.ca_file,
            api_key=api_key if api_key is not None else read_api_key(settings),
        )
        self.name = f'remote:{self.endpoint.url}'
        self.wire_dtype = WIRE_DTYPES.get(settings.dtype)  # None: the embeddings' own
        self._model = settings.model
        self.last_bytes_sent = 0  # request body of the last answer (benchmarks)
        self.last_token_ids: list[int] = []  # the last answer's ids, when the server sends them

    # ------------------------------------------------------------------ protocol

    def generate(
        self,
        prompt: Sequence[PromptPart],
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
        positions: torch.Tensor | None = None,
    ) -> Generation:
        refuse_positions(
            positions, 'remote', 'M-RoPE positions cannot be sent as prompt embeddings'
        )
        streamed = [False]

        def forward(piece: str, tokens: int) -> None:
            streamed[0] = True
            if on_token is not None:
                on_token(piece, tokens)

        try:
            return self._remote(self.embed(prompt), request, forward, should_stop)
        except RemoteError as exc:
            if self.fallback is None or streamed[0]:
                raise
            log.warning('%s failed (%s); answering with the local model', self.name, exc)
            return self.fallback.generate(prompt, request, on_token, should_stop)

    def close(self) -> None:
        """Nothing stays open between answers; a fallback's weights belong to the family."""

    # ------------------------------------------------------------------ the request

    def model_name(self) -> str:
        """``model.remote.model``, else the one model the server lists (asked once)."""
        if not self._model:
            listing = get_json(self.endpoint, '/v1/models')
            found = [m.get('id') for m in listing.get('data', []) if isinstance(m, dict)]
            ids = [i for i in found if isinstance(i, str)]
            if len(ids) != 1:
                raise RemoteError(
                    f'{self.endpoint.url} serves {ids or "no models"}: set model.remote.model'
                )
            self._model = ids[0]
        return self._model

    def payload(self, embeds: torch.Tensor, request: GenerationRequest) -> dict[str, Any]:
        """The /v1/completions body for prompt embeddings (T, H)."""
        body: dict[str, Any] = {
            'model': self.model_name(),
            'prompt_embeds': encode_embeds(embeds, self.wire_dtype),
            'max_tokens': request.max_new_tokens,
            'temperature': request.temperature,
            'top_p': request.top_p if request.temperature > 0 else 1.0,
            'stream': True,
            'stream_options': {'include_usage': True},
            'skip_special_tokens': True,
            'return_token_ids': True,  # vLLM: each chunk's ids (counts; tests compare them)
        }
        if self.eos_ids:
            body['stop_token_ids'] = sorted(self.eos_ids)
        else:
            body['ignore_eos'] = True  # a fixed answer length (benchmarks)
        return body

    def _remote(
        self,
        embeds: torch.Tensor,
        request: GenerationRequest,
        on_token: TokenCallback,
        should_stop: StopCheck | None,
    ) -> Generation:
        if should_stop is not None and should_stop():
            return Generation(text='', tokens=0, stop_reason='cancelled')
        stream = EventStream(self.endpoint, '/v1/completions', self.payload(embeds, request))
        self.last_bytes_sent = stream.bytes_sent
        answer = _Answer(on_token)
        done = threading.Event()
        watcher = None
        if should_stop is not None:
            watcher = threading.Thread(
                target=_watch, args=(should_stop, stream, done), name='remote-cancel', daemon=True
            )
            watcher.start()
        try:
            for event in stream.events():
                answer.add(event, self.endpoint.url)
                if answer.finish is not None and answer.usage is not None:
                    break
        except RemoteError:
            if not stream.aborted:
                raise
        finally:
            done.set()
            stream.close()
            if watcher is not None:
                watcher.join()
            self.last_token_ids = answer.ids
        if stream.aborted:
            return Generation(text=answer.shown, tokens=answer.tokens, stop_reason='cancelled')
        if answer.finish is None:
            raise RemoteError(f'{self.endpoint.url} ended the answer without a finish_reason')
        reason = FINISH.get(answer.finish)
        if reason is None:
            raise RemoteError(f'{self.endpoint.url} ended the answer with {answer.finish!r}')
        return Generation(text=answer.shown, tokens=answer.count(), stop_reason=reason)


def _watch(should_stop: StopCheck, stream: EventStream, done: threading.Event) -> None:
    """Polls should_stop while an answer streams; a stop aborts the stream (any read wakes)."""
    while not done.wait(STOP_POLL_S):
        if should_stop():
            stream.abort()
            return


class _Answer:
    """Accumulates completion chunks: text (pieces as the local stream gives them), counts."""

    def __init__(self, on_token: TokenCallback) -> None:
        self.on_token = on_token
        self.raw = ''  # the text as the server sent it
        self.shown = ''  # what was handed out: raw without its leading spaces
        self.tokens = 0  # generated tokens seen so far (chunks, or token ids when sent)
        self.ids: list[int] = []
        self.finish: str | None = None
        self.usage: int | None = None  # completion_tokens from the final usage chunk

    def add(self, event: dict[str, Any], where: str) -> None:
        usage = event.get('usage')
        if isinstance(usage, dict) and isinstance(usage.get('completion_tokens'), int):
            self.usage = int(usage['completion_tokens'])
        choices = event.get('choices')
        if not isinstance(choices, list):
            raise RemoteError(f'{where} sent a chunk without choices: {str(event)[:120]}')
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get('text', ''), str):
                raise RemoteError(f'{where} sent a malformed choice: {str(choice)[:120]}')
            ids = choice.get('token_ids')
            if isinstance(ids, list):
                self.ids += [int(i) for i in ids]
                self.tokens += len(ids)
            elif choice.get('text'):
                self.tokens += 1
            self._text(choice.get('text') or '')
            if choice.get('finish_reason') is not None:
                self.finish = str(choice['finish_reason'])

    def _text(self, text: str) -> None:
        self.raw += text
        shown = self.raw.lstrip()
        piece, self.shown = shown[len(self.shown) :], shown
        if piece:
            self.on_token(piece, self.tokens)

    def count(self) -> int:
        return self.usage if self.usage is not None else self.tokens


def attach_remote(model: Any, settings: RemoteConfig) -> None:
    """Replace ``model.decoder`` (the family's TorchDecoder) by a RemoteDecoder.

    The local decoder stays as the fallback when ``settings.fallback``; otherwise its decoder
    layers, final norm and output head are released (moved to the meta device: the server runs
    them), and only the input embedding table stays, which embeds the prompt's text.
    """
    local = model.decoder
    embed = getattr(local, 'embed', None)
    if embed is None:
        raise ConfigError(f'model.decoder=remote needs the local embedding table ({local.name})')
    model.decoder = RemoteDecoder(
        settings, embed, local.eos_ids, fallback=local if settings.fallback else None
    )
    freed = 0 if settings.fallback else release_layers(local.lm)
    log.info(
        'answers come from %s (fallback: %s; %.1f MB of language-model weights released)',
        model.decoder.name,
        'local' if settings.fallback else 'none',
        freed / 1e6,
    )


def release_layers(lm: Any) -> int:
    """Move the LM's layers, final norm and (untied) output head to ``meta``; bytes freed.

    ``lm`` is a transformers causal LM (LlamaForCausalLM, or a LLaVA model whose decoder is its
    language model); its input embedding table stays where it is.
    """
    keep = lm.get_input_embeddings().weight
    parts = []
    decoder = lm.get_decoder() if hasattr(lm, 'get_decoder') else None
    for name in ('layers', 'norm'):
        part = getattr(decoder, name, None)
        if isinstance(part, torch.nn.Module):
            parts.append(part)
    head = lm.get_output_embeddings() if hasattr(lm, 'get_output_embeddings') else None
    if isinstance(head, torch.nn.Module) and getattr(head, 'weight', None) is not keep:
        parts.append(head)
    freed = 0
    for part in parts:
        freed += sum(p.numel() * p.element_size() for p in part.parameters() if not p.is_meta)
        part.to('meta')
    if keep.is_meta:
        raise ModelError('releasing the language model took its embedding table with it')
    return freed
