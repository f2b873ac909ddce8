"""A :class:`TextDecoder` on llama.cpp: a GGUF language model answers from prompt embeddings.

The model family keeps its vision tower, projector and memory in torch and hands this decoder
the prompt as parts (token ids, projected memory rows (N, H)); the decoder turns every part
into float32 rows in the GGUF's own input space (ids through the GGUF's ``token_embd`` table,
read straight from the file, so text and memory rows always agree with the weights that
answer), feeds them to llama.cpp as an embeddings batch (``llama_batch_init(n, n_embd, 1)``,
``batch.embd``), and samples token by token with the same greedy / temperature / top_p rule as
the torch decoder (:func:`~flash_vstream_ros.models.generate.pick_token`).

* KV cache reuse: the rows already in the cache are remembered; a new prompt that starts with
  the same rows (bit for bit) decodes only its new tail (``llama_memory_seq_rm`` of the rest).
* Cancel: ``should_stop`` is asked before every token and, through llama.cpp's abort callback,
  inside a long prefill; the cache then keeps only the rows known to be complete.
* Stop tokens: every end-of-generation token of the GGUF vocabulary, plus the family's own.
* Text: the family's tokenizer decodes when given (the same text as the torch decoder),
  otherwise the GGUF's vocabulary (:class:`GgufVocab`).
* ``OMP_WAIT_POLICY=PASSIVE`` is set before llama.cpp loads (spinning OpenMP threads make
  decode speed swing 50x on shared cores); the log callback stays referenced for the process.

Needs ``llama-cpp-python`` (``pip install .[gguf]``; built with ``CMAKE_ARGS=-DGGML_CUDA=on``
for GPU offload on a Jetson) and the ``gguf`` package (dequantises the token table).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import ctypes
import logging
import os
from pathlib import Path
import threading
import time
from typing import Any

import numpy as np
import torch

from flash_vstream_ros.errors import CheckpointError, ConfigError, ModelError
from flash_vstream_ros.models.base import Generation, GenerationRequest, StopCheck, TokenCallback
from flash_vstream_ros.models.decoder import PromptPart, refuse_positions
from flash_vstream_ros.models.generate import TextStream, pick_token
from flash_vstream_ros.models.gguf_file import GgufVocab, TokenTable

log = logging.getLogger(__name__)

INSTALL_HINT = (
    'install llama-cpp-python and gguf (pip install "flash_vstream_ros[gguf]"; on a Jetson '
    'CMAKE_ARGS=-DGGML_CUDA=on pip install llama-cpp-python==0.3.36, see docs/install.md)'
)
_STATE: dict[str, Any] = {}  # the loaded llama_cpp module and its log callback (kept alive)
_INIT_LOCK = threading.Lock()
GGML_LOG_WARN, GGML_LOG_ERROR = 3, 4  # enum ggml_log_level (ggml.h: 0 none, 1 debug, 2 info)


def llama_cpp_module() -> Any:
    """``llama_cpp`` imported once, with OMP_WAIT_POLICY=PASSIVE and logs routed to logging."""
    with _INIT_LOCK:
        if 'llama_cpp' in _STATE:
            return _STATE['llama_cpp']
        os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # read when libgomp starts
        try:
            import llama_cpp
        except (ImportError, OSError) as exc:
            raise ConfigError(
                f'model.decoder=gguf needs llama_cpp ({exc}): {INSTALL_HINT}'
            ) from exc

        @llama_cpp.llama_log_callback
        def _log(level: int, text: bytes, _user: Any) -> None:
            message = text.decode('utf-8', 'replace').rstrip()
            if message:
                level_name = (
                    logging.WARNING if level in (GGML_LOG_WARN, GGML_LOG_ERROR) else logging.DEBUG
                )
                log.log(level_name, 'llama.cpp: %s', message)

        llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _STATE['log_callback'] = _log  # a collected callback is a segfault at the next log line
        _STATE['llama_cpp'] = llama_cpp
        return llama_cpp


def gguf_available() -> str:
    """'' when llama_cpp and gguf import, else why not (for skips and error messages)."""
    try:
        llama_cpp_module()
        import gguf  # noqa: F401
    except (ConfigError, ImportError) as exc:
        return str(exc)
    return ''


# --------------------------------------------------------------------------- the decoder


class GgufDecoder:
    """A GGUF language model on llama.cpp behind the TextDecoder protocol."""

    def __init__(
        self,
        path: str | Path,
        *,
        n_gpu_layers: int = -1,
        n_ctx: int = 4096,
        n_threads: int = 0,
        kv_f32: bool = False,
        tokenizer: Any = None,
        eos_ids: Iterable[int] = (),
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise CheckpointError(f'GGUF file {str(self.path)!r} does not exist')
        lib = self._lib = llama_cpp_module()
        self.name = f'gguf:{self.path.name}'
        self.table = TokenTable(self.path)
        start = time.perf_counter()
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = n_gpu_layers
        self._model = lib.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self._model:
            raise CheckpointError(f'llama.cpp cannot load {self.path} (see the llama.cpp log)')
        self.n_embd = int(lib.llama_model_n_embd_inp(self._model))
        if self.n_embd != self.table.dim:
            raise CheckpointError(
                f'{self.path}: token_embd has width {self.table.dim}, the model {self.n_embd}'
            )
        threads = n_threads or max(1, min(8, os.cpu_count() or 1))
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = min(n_ctx, 512)
        cparams.n_threads = cparams.n_threads_batch = threads
        if kv_f32:  # exact: f32 keys and values, no flash attention (it needs f16)
            cparams.type_k = cparams.type_v = lib.GGML_TYPE_F32
            cparams.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = lib.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            lib.llama_model_free(self._model)
            raise ModelError(f'llama.cpp cannot create a context of {n_ctx} tokens')
        self.n_ctx = int(lib.llama_n_ctx(self._ctx))
        self.n_batch = int(lib.llama_n_batch(self._ctx))
        self._vocab_ptr = lib.llama_model_get_vocab(self._model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self._vocab_ptr))
        self.vocab = GgufVocab(lib, self._vocab_ptr)
        self.tokenizer = tokenizer if tokenizer is not None else self.vocab
        self.eos_ids = set(eos_ids) | _eog_ids(lib, self._vocab_ptr, self.n_vocab)
        self.gpu_offload = bool(lib.llama_supports_gpu_offload()) and n_gpu_layers != 0
        self._embd_batch = lib.llama_batch_init(self.n_batch, self.n_embd, 1)
        self._token_batch = lib.llama_batch_init(1, 0, 1)
        # the rows in the KV cache, in order: _rows[:_n] (n_ctx x n_embd float32, 32 MiB for 7B)
        self._rows = np.empty((self.n_ctx, self.n_embd), np.float32)
        self._n = 0
        self._stop: StopCheck | None = None
        self._abort = lib.ggml_abort_callback(self._should_abort)  # kept: llama.cpp calls it
        lib.llama_set_abort_callback(self._ctx, self._abort, ctypes.c_void_p(0))
        self._lock = threading.Lock()
        self.reused_rows = 0  # rows of the last prompt served from the KV cache
        self.last_ids: list[int] = []  # the last answer's ids, with its stop token if any
        log.info(
            'loaded %s (%d layers on the GPU: %s, n_ctx %d, %d threads, KV %s) in %.1f s',
            self.path.name,
            n_gpu_layers,
            'yes' if self.gpu_offload else 'no (CPU build)',
            self.n_ctx,
            threads,
            'f32' if kv_f32 else 'f16',
            time.perf_counter() - start,
        )

    # ------------------------------------------------------------------ protocol

    def generate(
        self,
        prompt: Sequence[PromptPart],
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
        positions: torch.Tensor | None = None,
    ) -> Generation:
        refuse_positions(positions, 'gguf', 'llama.cpp numbers prompt rows 0..T-1')
        rows = self.embed(prompt)  # (T, H)
        if len(rows) == 0:
            raise ModelError('empty prompt')
        if len(rows) >= self.n_ctx:
            raise ModelError(
                f'the prompt has {len(rows)} rows but model.gguf.n_ctx is {self.n_ctx}: '
                'raise n_ctx or use a smaller memory budget'
            )
        with self._lock:
            return self._generate(rows, request, on_token, should_stop)

    def embed(self, prompt: Sequence[PromptPart]) -> np.ndarray:
        """The parts as one float32 (T, H) array in the GGUF's input space."""
        rows = []
        for part in prompt:
            if isinstance(part, torch.Tensor):
                if part.ndim != 2 or part.shape[1] != self.n_embd:
                    raise ModelError(
                        f'prompt rows of shape {tuple(part.shape)} for a GGUF of width '
                        f'{self.n_embd}'
                    )
                rows.append(part.detach().to('cpu', torch.float32).numpy())  # (N, H)
            elif part:
                rows.append(self.table.rows(part))  # (T, H)
        if not rows:
            return np.zeros((0, self.n_embd), np.float32)
        return np.ascontiguousarray(np.concatenate(rows), dtype=np.float32)

    def prompt_logits(self, prompt: Sequence[PromptPart]) -> torch.Tensor:
        """The next-token logits (V,) after the prompt (benchmarks and tests)."""
        rows = self.embed(prompt)
        with self._lock:
            if not self._prefill(rows):
                raise ModelError('prefill aborted')
            return self._logits()

    def token_logits(self, ids: Sequence[int]) -> torch.Tensor:
        """The next-token logits (V,) after ``ids`` fed as token ids (llama.cpp's own lookup,
        not our rows; from an empty cache): what the embedding path is checked against."""
        lib = self._lib
        with self._lock:
            lib.llama_memory_clear(lib.llama_get_memory(self._ctx), True)
            self._n = 0
            batch = lib.llama_batch_init(len(ids), 0, 1)
            try:
                for i, token in enumerate(ids):
                    batch.token[i] = token
                _number(batch, 0, len(ids), last=len(ids) - 1)
                rc = int(lib.llama_decode(self._ctx, batch))
            finally:
                lib.llama_batch_free(batch)
            lib.llama_memory_clear(lib.llama_get_memory(self._ctx), True)  # not our rows
            if rc != 0:
                raise ModelError(f'llama_decode failed ({rc})')
            return self._logits()

    def reset(self) -> None:
        """Forget the KV cache (the next prompt is decoded from its first row)."""
        with self._lock:
            self._lib.llama_memory_clear(self._lib.llama_get_memory(self._ctx), True)
            self._n = 0

    def close(self) -> None:
        lib = self._lib
        with self._lock:
            if self._ctx:
                lib.llama_batch_free(self._embd_batch)
                lib.llama_batch_free(self._token_batch)
                lib.llama_free(self._ctx)
                lib.llama_model_free(self._model)
                self._ctx = self._model = None

    # ------------------------------------------------------------------ internals

    def _generate(
        self,
        rows: np.ndarray,
        request: GenerationRequest,
        on_token: TokenCallback | None,
        should_stop: StopCheck | None,
    ) -> Generation:
        if not self._ctx:
            raise ModelError('the gguf decoder is closed')
        stream, reason = TextStream(self.tokenizer, on_token), 'length'
        self._stop, self.last_ids = should_stop, []
        try:
            if should_stop is not None and should_stop():
                return Generation(text='', tokens=0, stop_reason='cancelled')
            if not self._prefill(rows):
                return Generation(text='', tokens=0, stop_reason='cancelled')
            limit = min(request.max_new_tokens, self.n_ctx - len(rows))
            for i in range(limit):
                token = pick_token(self._logits(), request)
                self.last_ids.append(token)
                if token in self.eos_ids:
                    reason = 'eos'
                    break
                stream.push(token)
                if i + 1 == limit:
                    break
                if should_stop is not None and should_stop():
                    reason = 'cancelled'
                    break
                if not self._decode_token(token):
                    reason = 'cancelled'
                    break
        finally:
            self._stop = None
        text = stream.finish()
        return Generation(text=text, tokens=len(stream.ids), stop_reason=reason)

    def _prefill(self, rows: np.ndarray) -> bool:
        """Decode ``rows`` after the longest prefix already in the cache; False when aborted."""
        lib = self._lib
        same = _common_prefix(self._rows[: self._n], rows)
        same = min(same, len(rows) - 1)  # at least one row decodes: its logits are needed
        lib.llama_memory_seq_rm(lib.llama_get_memory(self._ctx), 0, same, -1)
        self._n = same
        self.reused_rows = same
        batch, pos = self._embd_batch, same
        while pos < len(rows):
            n = min(self.n_batch, len(rows) - pos)
            chunk = rows[pos : pos + n]  # (n, H)
            ctypes.memmove(batch.embd, chunk.ctypes.data, chunk.nbytes)
            _number(batch, pos, n, last=len(rows) - 1)
            if not self._decode(batch, pos):
                return False
            self._rows[pos : pos + n] = chunk
            self._n = pos + n
            pos += n
        return True

    def _decode_token(self, token: int) -> bool:
        batch, pos = self._token_batch, self._n
        batch.token[0] = token
        _number(batch, pos, 1, last=pos)
        if not self._decode(batch, pos):
            return False
        self._rows[pos] = self.table.rows([token])[0]
        self._n = pos + 1
        return True

    def _decode(self, batch: Any, pos: int) -> bool:
        """llama_decode; False when aborted (the cache is cut back to ``pos``)."""
        lib = self._lib
        rc = int(lib.llama_decode(self._ctx, batch))
        if rc == 0:
            return True
        lib.llama_memory_seq_rm(lib.llama_get_memory(self._ctx), 0, pos, -1)
        self._n = min(self._n, pos)
        if rc == 2:  # aborted by should_stop
            return False
        raise ModelError(f'llama_decode failed ({rc}) at position {pos} of n_ctx {self.n_ctx}')

    def _logits(self) -> torch.Tensor:
        ptr = self._lib.llama_get_logits_ith(self._ctx, -1)
        return torch.from_numpy(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy())  # (V,)

    def _should_abort(self, _data: Any) -> bool:
        stop = self._stop
        return bool(stop is not None and stop())


def _number(batch: Any, pos: int, n: int, last: int) -> None:
    """Positions pos..pos+n-1 in sequence 0; logits only for position ``last``."""
    for i in range(n):
        batch.pos[i] = pos + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = int(pos + i == last)
    batch.n_tokens = n


def _eog_ids(lib: Any, vocab: Any, n_vocab: int) -> set[int]:
    """Every end-of-generation token of the vocabulary (EOS, EOT, <|im_end|>, ...)."""
    return {i for i in range(n_vocab) if lib.llama_vocab_is_eog(vocab, i)}


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading rows of (Ta, H) and (Tb, H) are equal, bit for bit."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(~np.all(a[:n] == b[:n], axis=1))
    return int(differ[0]) if differ.size else n
