"""``flash-vstream export-gguf``: a checkpoint's language model as GGUF, the rest as a sidecar.

What a robot then needs is two files: ``OUT.gguf`` (the language model, answered by llama.cpp)
and ``OUT.sidecar.pt`` (everything the family keeps in torch: the vision tower, the projector,
the abstract memory's q/k, config.json, tokenizer and image processor files).

Conversion is llama.cpp's own: ``convert_hf_to_gguf.py`` with its ``conversion/`` and
``gguf-py/`` folders, which only the llama-cpp-python source package ships (its
``vendor/llama.cpp``; the PyPI ``gguf`` package does not match it). Found in ``--llama-cpp``,
``$FLASH_VSTREAM_LLAMA_CPP``, or ``~/.cache/flash_vstream_ros/llama.cpp-<version>``; when
absent, the source package is fetched once with ``pip download`` into that cache. Quantisation
(q8_0, q4_k_m) is ``llama_cpp.llama_model_quantize`` on the f16/f32 GGUF, no binary needed.

Input formats: a Flash-VStream v1 checkpoint (``model_type "vstream"``: its Llama part), a
transformers LLaVA-style folder (its ``text_config`` language model) or a plain causal LM folder
(Llama, Qwen2, ...: GGUF only, no sidecar). A BPE tokenizer whose pre-tokenizer llama.cpp does
not know (the tiny test models' trained ones) is written with ``--pre-tokenizer`` (default for
an unknown one: ``qwen2`` for Qwen2 models, ``gpt-2`` otherwise); the backend tokenizes with
the sidecar's tokenizer anyway, so this only names the GGUF's own vocabulary handling.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
import json
import logging
import os
from pathlib import Path
import shutil
import tempfile
import time
from typing import Any

import torch

from flash_vstream_ros.errors import CheckpointError, ConfigError
from flash_vstream_ros.models import checkpoint as ckpt
from flash_vstream_ros.models.gguf_convert import find_llama_cpp, quantize, run_convert
from flash_vstream_ros.models.lm_export import llava_rename

__all__ = ['export_gguf', 'find_llama_cpp', 'quantize', 'read_sidecar', 'sidecar_path']

log = logging.getLogger(__name__)

QUANTS = ('f32', 'f16', 'q8_0', 'q4_k_m')
SIDECAR_FORMAT = 'flash_vstream_ros.gguf_sidecar'
SIDECAR_VERSION = 1
SIDECAR_SUFFIX = '.sidecar.pt'
TEXT_FILES = (  # copied into the sidecar and the conversion folder when present
    'tokenizer.json',
    'tokenizer_config.json',
    'tokenizer.model',
    'special_tokens_map.json',
    'added_tokens.json',
    'vocab.json',
    'merges.txt',
    'generation_config.json',
    'chat_template.json',
    'chat_template.jinja',
    'preprocessor_config.json',
)
ARCHITECTURES = {'llama': 'LlamaForCausalLM', 'qwen2': 'Qwen2ForCausalLM'}
SHARD_BYTES = 2 << 30


@dataclass(frozen=True)
class ExportResult:
    gguf: Path
    sidecar: Path | None
    quant: str
    seconds: float
    gguf_bytes: int


def sidecar_path(gguf_path: str | Path) -> Path:
    """``model.gguf`` -> ``model.sidecar.pt`` (where export-gguf writes it)."""
    path = Path(gguf_path)
    return path.with_name(path.stem + SIDECAR_SUFFIX)


# --------------------------------------------------------------------------- checkpoint parts


@dataclass
class _Parts:
    family: str  # 'flash_vstream', 'llava' or 'lm' (a plain causal LM: no sidecar)
    lm_config: dict[str, Any]
    lm_rename: Any  # checkpoint name -> LM name (model.*, lm_head.*) or None (not the LM)
    torch_dtype: str


def _parts(folder: Path) -> _Parts:
    raw = ckpt.read_json(folder / 'config.json')
    model_type = raw.get('model_type')
    if model_type == 'vstream':
        from flash_vstream_ros.models.v1_format import V1Spec

        spec = V1Spec.parse(raw, str(folder))
        lm = spec.llama_kwargs()
        lm.pop('dtype', None)
        lm.update(model_type='llama', architectures=['LlamaForCausalLM'])
        keep_out = ('model.mm_projector.', 'model.attention_model.', 'model.vision_tower.')

        def v1_rename(name: str) -> str | None:
            if name.startswith(keep_out) or not name.startswith(('model.', 'lm_head.')):
                return None
            return name

        return _Parts('flash_vstream', lm, v1_rename, _dtype(raw))
    text = raw.get('text_config')
    if isinstance(text, dict):  # LLaVA-style: its language model
        lm = dict(text)
        kind = str(lm.get('model_type', 'llama'))
        if kind not in ARCHITECTURES:
            raise CheckpointError(
                f'{folder}: text model_type {kind!r} is not one of {sorted(ARCHITECTURES)}'
            )
        lm['architectures'] = [ARCHITECTURES[kind]]
        if 'tie_word_embeddings' in raw:
            lm.setdefault('tie_word_embeddings', raw['tie_word_embeddings'])
        return _Parts('llava', lm, llava_rename, _dtype(raw))
    if model_type in ARCHITECTURES:
        return _Parts('lm', raw, lambda n: n, _dtype(raw))
    raise CheckpointError(
        f'{folder}: model_type {model_type!r} is neither a Flash-VStream v1 checkpoint, a '
        f'LLaVA-style model nor a causal LM of {sorted(ARCHITECTURES)}'
    )


def _dtype(raw: dict[str, Any]) -> str:
    """The checkpoint's weights dtype (``torch_dtype``; ``dtype`` in transformers 5)."""
    return str(raw.get('torch_dtype') or raw.get('dtype') or 'float32')


def _write_lm_folder(folder: Path, parts: _Parts, dest: Path) -> dict[str, torch.Tensor]:
    """The language model as a plain HF folder in ``dest``; returns the other tensors."""
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    (dest / 'config.json').write_text(json.dumps(parts.lm_config, indent=2))
    for name in TEXT_FILES:
        if (folder / name).is_file():
            shutil.copy(folder / name, dest / name)
    rest: dict[str, torch.Tensor] = {}
    shard: dict[str, torch.Tensor] = {}
    weight_map: dict[str, str] = {}
    files: list[str] = []

    def flush() -> None:
        if shard:
            fname = f'model-{len(files) + 1:05d}.safetensors'
            save_file(
                {k: v.contiguous() for k, v in shard.items()}, str(dest / fname), {'format': 'pt'}
            )
            weight_map.update(dict.fromkeys(shard, fname))
            files.append(fname)
            shard.clear()

    size = 0
    for name, tensor in ckpt.iter_checkpoint(folder):
        target = parts.lm_rename(name)
        if target is None:
            rest[name] = tensor.detach().clone()
            continue
        shard[target] = tensor
        size += tensor.numel() * tensor.element_size()
        if size >= SHARD_BYTES:
            flush()
            size = 0
    flush()
    if not weight_map:
        raise CheckpointError(f'{folder}: no language-model weights found')
    index = {'metadata': {'total_size': 0}, 'weight_map': weight_map}
    (dest / 'model.safetensors.index.json').write_text(json.dumps(index))
    return rest


def write_sidecar(
    path: Path,
    family: str,
    folder: Path,
    tensors: dict[str, torch.Tensor],
    gguf_name: str,
    quant: str,
) -> None:
    """The torch half: config.json, tokenizer/processor files (as uint8 tensors) and weights."""
    files = {'config.json': folder / 'config.json'}
    files.update({n: folder / n for n in TEXT_FILES if (folder / n).is_file()})
    payload = {
        'format': SIDECAR_FORMAT,
        'version': SIDECAR_VERSION,
        'family': family,
        'gguf': gguf_name,
        'quant': quant,
        'files': {
            n: torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8)
            for n, p in files.items()
        },
        'state_dict': {k: v.contiguous() for k, v in tensors.items()},
    }
    tmp = path.with_name(path.name + '.tmp')
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar written by :func:`write_sidecar`; CheckpointError when absent or foreign."""
    if not path.is_file():
        raise CheckpointError(
            f'sidecar {str(path)!r} does not exist (flash-vstream export-gguf writes it beside '
            'the GGUF; set model.gguf.sidecar)'
        )
    try:
        data = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f'cannot read sidecar {path}: {type(exc).__name__}: {exc}') from exc
    if not isinstance(data, dict) or data.get('format') != SIDECAR_FORMAT:
        raise CheckpointError(f'{path} is not a flash_vstream_ros GGUF sidecar')
    if data.get('version') != SIDECAR_VERSION:
        raise CheckpointError(
            f'{path}: sidecar version {data.get("version")} (expected {SIDECAR_VERSION})'
        )
    return data


@contextlib.contextmanager
def sidecar_folder(data: dict[str, Any]) -> Iterator[Path]:
    """The sidecar's files (config.json, tokenizer, ...) written into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix='fvs-sidecar-') as tmp:
        for name, blob in data['files'].items():
            (Path(tmp) / Path(name).name).write_bytes(blob.numpy().tobytes())
        yield Path(tmp)


# --------------------------------------------------------------------------- export


def export_gguf(
    checkpoint: str | Path,
    out: str | Path,
    quant: str = 'q4_k_m',
    llama_cpp: str | Path | None = None,
    pre_tokenizer: str = '',
    threads: int = 0,
) -> ExportResult:
    """Write ``out`` (GGUF of the language model at ``quant``) and its sidecar (see module doc)."""
    if quant not in QUANTS:
        raise ConfigError(f'--quant must be one of {list(QUANTS)}, got {quant!r}')
    start = time.perf_counter()
    folder, out = Path(checkpoint).expanduser(), Path(out).expanduser()
    parts = _parts(folder)
    vendor = find_llama_cpp(llama_cpp)
    forced = pre_tokenizer or (
        'qwen2' if parts.lm_config.get('model_type') == 'qwen2' else 'gpt-2'
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.fvs-gguf-', dir=out.parent) as tmp:
        if parts.family == 'lm':
            lm_folder, rest = folder, {}
        else:
            lm_folder = Path(tmp) / 'lm'
            rest = _write_lm_folder(folder, parts, lm_folder)
        direct = quant in ('f32', 'f16')
        half = parts.torch_dtype in ('float16', 'bfloat16')
        first = out.with_name(out.name + '.part') if direct else Path(tmp) / 'full.gguf'
        run_convert(
            vendor, lm_folder, first, quant if direct else ('f16' if half else 'f32'), forced
        )
        if direct:
            os.replace(first, out)
        else:
            part = out.with_name(out.name + '.part')
            quantize(first, part, quant, threads)
            os.replace(part, out)
    sidecar = None
    if parts.family != 'lm':
        sidecar = sidecar_path(out)
        write_sidecar(sidecar, parts.family, folder, rest, out.name, quant)
    seconds = time.perf_counter() - start
    log.info('exported %s -> %s (%s, %.1f s)', folder, out, quant, seconds)
    return ExportResult(out, sidecar, quant, seconds, out.stat().st_size)
