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
import struct
import threading
import time
from typing import Any

import numpy as np
import torch

from flash_vstream_ros.errors import CheckpointError, ConfigError, ModelError
from flash_vstream_ros.models.base import Generation, GenerationRequest, StopCheck, TokenCallback
from flash_vstream_ros.models.decoder import PromptPart
from flash_vstream_ros.models.generate import TextStream, pick_token

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


# --------------------------------------------------------------------------- the GGUF file


GGUF_MAGIC = b'GGUF'
# GGUF metadata value types -> struct format of a scalar (8: string, 9: array)
_SCALARS = {
    0: 'B',
    1: 'b',
    2: 'H',
    3: 'h',
    4: 'I',
    5: 'i',
    6: 'f',
    7: '?',
    10: 'Q',
    11: 'q',
    12: 'd',
}


class GgufTensors:
    """The tensor table of a GGUF file (name -> dims, type, absolute offset), read in ms.

    ``gguf.GGUFReader`` also builds a numpy view of every metadata element (14 s for a 49k
    vocabulary); this reads the header with ``struct``, skipping the metadata it does not need.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta: dict[str, Any] = {}
        self.tensors: dict[str, tuple[tuple[int, ...], int, int]] = {}
        try:
            with path.open('rb') as f:
                self._read(f)
        except (OSError, struct.error, UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(f'cannot read the GGUF file {path}: {exc}') from exc

    def _read(self, f: Any) -> None:
        if f.read(4) != GGUF_MAGIC:
            raise ValueError('not a GGUF file (bad magic)')
        version, n_tensors, n_kv = struct.unpack('<IQQ', f.read(20))
        if version < 2:
            raise ValueError(f'GGUF version {version} is too old')
        for _ in range(n_kv):
            key = self._string(f)
            (kind,) = struct.unpack('<I', f.read(4))
            self.meta[key] = self._value(f, kind)
        infos = []
        for _ in range(n_tensors):
            name = self._string(f)
            (ndim,) = struct.unpack('<I', f.read(4))
            dims = struct.unpack(f'<{ndim}Q', f.read(8 * ndim))
            kind, offset = struct.unpack('<IQ', f.read(12))
            infos.append((name, dims, kind, offset))
        align = int(self.meta.get('general.alignment', 32))
        start = -(-f.tell() // align) * align
        self.tensors = {n: (d, k, start + o) for n, d, k, o in infos}

    @staticmethod
    def _string(f: Any) -> str:
        (n,) = struct.unpack('<Q', f.read(8))
        return str(f.read(n).decode('utf-8'))

    def _value(self, f: Any, kind: int) -> Any:
        if kind == 8:
            return self._string(f)
        if kind == 9:
            item, count = struct.unpack('<IQ', f.read(12))
            if item in _SCALARS:  # skipped in one read (token types, scores, ...)
                size = struct.calcsize(_SCALARS[item])
                f.seek(size * count, 1)
                return None
            for _ in range(count):  # strings (the vocabulary, merges): skipped one by one
                self._value(f, item)
            return None
        fmt = _SCALARS[kind]
        return struct.unpack('<' + fmt, f.read(struct.calcsize(fmt)))[0]


class TokenTable:
    """The GGUF's ``token_embd`` rows, memory-mapped, dequantised (float32) row by row on use.

    Keeping the file's own (quantised) bytes costs no memory and gives exactly the rows that
    llama.cpp itself looks up for an id; a fully dequantised 7B table would be 500 MB.
    """

    def __init__(self, path: Path) -> None:
        table = GgufTensors(path)
        if 'token_embd.weight' not in table.tensors:
            raise CheckpointError(f'{path} has no token_embd.weight tensor')
        (dim, vocab), self.kind, offset = table.tensors['token_embd.weight']
        import gguf

        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(self.kind)]
        row_bytes = dim // block * type_size
        self.dim, self.vocab = int(dim), int(vocab)
        self._rows = np.memmap(path, np.uint8, 'r', offset, (self.vocab, row_bytes))
        self._type = gguf.GGMLQuantizationType(self.kind)
        self._dequantize = gguf.quants.dequantize

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        """Token ids (T,) -> float32 rows (T, H)."""
        index = np.asarray(ids, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.vocab):
            raise ModelError(f'token id out of range 0..{self.vocab - 1}: {index.tolist()}')
        raw = np.asarray(self._rows[index])  # (T, row_bytes)
        if self._type == 0:  # F32: the bytes are the rows
            return raw.view(np.float32).reshape(len(index), self.dim).copy()
        out = self._dequantize(raw, self._type)
        return np.ascontiguousarray(out, dtype=np.float32).reshape(len(index), self.dim)


class GgufVocab:
    """Tokenizer-like access to the GGUF vocabulary (what TextStream and tests need)."""

    def __init__(self, lib: Any, vocab: Any) -> None:
        self._lib, self._vocab = lib, vocab

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        data = text.encode('utf-8')
        size = len(data) + 16
        buf = (self._lib.llama_token * size)()
        n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, size, add_special, True)
        if n < 0:
            raise ModelError(f'cannot tokenize {text[:40]!r} ({n})')
        return list(buf[:n])

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        if not ids:
            return ''
        arr = (self._lib.llama_token * len(ids))(*ids)
        size = 16 * len(ids) + 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self._lib.llama_detokenize(
                self._vocab, arr, len(ids), buf, size, False, not skip_special_tokens
            )
            if n >= 0:
                return buf.raw[:n].decode('utf-8', 'replace')
            size = -n + 16


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
        self.eos_ids = set(eos_ids) | self._eog_ids()
        self.gpu_offload = bool(lib.llama_supports_gpu_offload()) and n_gpu_layers != 0
        self._embd_batch = lib.llama_batch_init(self.n_batch, self.n_embd, 1)
        self._token_batch = lib.llama_batch_init(1, 0, 1)
        self._cached = np.zeros((0, self.n_embd), np.float32)  # rows in the KV cache, in order
        self._stop: StopCheck | None = None
        self._abort = lib.ggml_abort_callback(self._should_abort)  # referenced: see _STATE
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
        if positions is not None:
            raise ModelError(
                'the gguf decoder cannot take explicit rotary positions (Qwen2-VL M-RoPE): '
                'llama.cpp numbers prompt rows 0..T-1; use model.decoder=torch for qwen2_vl'
            )
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
            self._cached = self._cached[:0]
            batch = lib.llama_batch_init(len(ids), 0, 1)
            try:
                for i, token in enumerate(ids):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = int(i == len(ids) - 1)
                batch.n_tokens = len(ids)
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
            self._cached = self._cached[:0]

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
        same = _common_prefix(self._cached, rows)
        same = min(same, len(rows) - 1)  # at least one row decodes: its logits are needed
        lib.llama_memory_seq_rm(lib.llama_get_memory(self._ctx), 0, same, -1)
        self._cached = self._cached[:same]
        self.reused_rows = same
        batch, pos = self._embd_batch, same
        while pos < len(rows):
            n = min(self.n_batch, len(rows) - pos)
            chunk = rows[pos : pos + n]  # (n, H)
            ctypes.memmove(batch.embd, chunk.ctypes.data, chunk.nbytes)
            for i in range(n):
                batch.pos[i] = pos + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = int(pos + i == len(rows) - 1)
            batch.n_tokens = n
            if not self._decode(batch, pos):
                return False
            self._cached = np.concatenate([self._cached, chunk])
            pos += n
        return True

    def _decode_token(self, token: int) -> bool:
        batch, pos = self._token_batch, len(self._cached)
        batch.token[0] = token
        batch.pos[0] = pos
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = 1
        batch.n_tokens = 1
        if not self._decode(batch, pos):
            return False
        self._cached = np.concatenate([self._cached, self.table.rows([token])])
        return True

    def _decode(self, batch: Any, pos: int) -> bool:
        """llama_decode; False when aborted (the cache is cut back to ``pos``)."""
        lib = self._lib
        rc = int(lib.llama_decode(self._ctx, batch))
        if rc == 0:
            return True
        lib.llama_memory_seq_rm(lib.llama_get_memory(self._ctx), 0, pos, -1)
        self._cached = self._cached[:pos]
        if rc == 2:  # aborted by should_stop
            return False
        raise ModelError(f'llama_decode failed ({rc}) at position {pos} of n_ctx {self.n_ctx}')

    def _logits(self) -> torch.Tensor:
        ptr = self._lib.llama_get_logits_ith(self._ctx, -1)
        return torch.from_numpy(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy())  # (V,)

    def _should_abort(self, _data: Any) -> bool:
        stop = self._stop
        return bool(stop is not None and stop())

    def _eog_ids(self) -> set[int]:
        lib, vocab = self._lib, self._vocab_ptr
        return {i for i in range(self.n_vocab) if lib.llama_vocab_is_eog(vocab, i)}


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading rows of (Ta, H) and (Tb, H) are equal, bit for bit."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(~np.all(a[:n] == b[:n], axis=1))
    return int(differ[0]) if differ.size else n
