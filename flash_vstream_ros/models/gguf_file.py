"""Reading a GGUF file without llama.cpp: its tensor table, its token embedding rows.

:class:`GgufTensors` parses the header with ``struct`` (``gguf.GGUFReader`` also builds a numpy
view of every metadata element: 14 s for SmolLM2's 49k-token vocabulary); :class:`TokenTable`
memory-maps ``token_embd`` and dequantises rows on use with the ``gguf`` package;
:class:`GgufVocab` is tokenizer-like access to llama.cpp's vocabulary of a loaded model.
"""

from __future__ import annotations

from collections.abc import Sequence
import ctypes
from pathlib import Path
import struct
from typing import Any

import numpy as np

from flash_vstream_ros.errors import CheckpointError, ModelError

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
