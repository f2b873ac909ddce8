"""Export the language model of a checkpoint into a folder that vLLM (or transformers) serves.

With ``model.decoder=remote`` the robot keeps the vision tower, the projector, the memory and
the input embedding table, and a server runs the language model on the prompt embeddings the
robot sends. The server needs only that language model as a plain causal LM folder:
``config.json`` of ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` / ..., safetensors shards with
an index, and the tokenizer files (vLLM loads a tokenizer to detokenize the answer).

Sources:
* a Flash-VStream v1 checkpoint (``IVGSZ/Flash-VStream-7b``): a Llama config with
  ``model_type "vstream"`` and mm_/compress_/video_ keys, weights ``model.*`` + ``lm_head.*``
  beside ``model.mm_projector.*``, ``model.attention_model.*``, ``model.vision_tower.*``;
* a transformers LLaVA-family folder (llava, llava_next, llava_onevision): its
  ``text_config``; weights ``model.language_model.*`` (transformers >= 4.52) or
  ``language_model.model.*`` (older saves), and ``lm_head.*`` / ``language_model.lm_head.*``.

Shards are converted one at a time (a 7B checkpoint never needs its 14 GB in memory at once).
"""

from __future__ import annotations

from collections.abc import Callable
import json
import logging
from pathlib import Path
import shutil
import time
from typing import Any

import torch

from flash_vstream_ros.errors import CheckpointError
from flash_vstream_ros.models import checkpoint as ckpt
from flash_vstream_ros.models.v1_format import MODEL_TYPE, V1Spec

log = logging.getLogger(__name__)
LLAVA_TYPES = ('llava', 'llava_next', 'llava_onevision')
CAUSAL_LM = {  # text model_type -> the plain causal LM class vLLM serves
    'llama': 'LlamaForCausalLM',
    'qwen2': 'Qwen2ForCausalLM',
    'mistral': 'MistralForCausalLM',
    'gemma': 'GemmaForCausalLM',
    'phi3': 'Phi3ForCausalLM',
}
TOKENIZER_FILES = (
    'tokenizer.json',
    'tokenizer.model',
    'tokenizer_config.json',
    'special_tokens_map.json',
    'added_tokens.json',
    'vocab.json',
    'merges.txt',
    'generation_config.json',
)
Rename = Callable[[str], str | None]  # checkpoint name -> exported name, None: not the LM's


def v1_rename(name: str) -> str | None:
    """The LM's tensors of a v1 checkpoint keep their names; vision, projector, memory go."""
    skip = ('model.mm_projector.', 'model.attention_model.', 'model.vision_tower.')
    if name.startswith(skip) or name.endswith('rotary_emb.inv_freq'):
        return None
    return name if name.startswith(('model.', 'lm_head.')) else None


def llava_rename(name: str) -> str | None:
    """LLaVA-family names (both transformers layouts) -> plain causal LM names."""
    for old, new in (
        ('model.language_model.', 'model.'),
        ('language_model.model.', 'model.'),
        ('language_model.lm_head.', 'lm_head.'),
        ('lm_head.', 'lm_head.'),
    ):
        if name.startswith(old):
            return new + name[len(old) :]
    return None


def _v1_config(raw: dict[str, Any], where: str) -> Any:
    from transformers import LlamaConfig

    spec = V1Spec.parse(raw, where)
    try:
        config = LlamaConfig(**spec.llama_kwargs())
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f'{where}: config.json is not a valid Llama config: {exc}') from exc
    config.architectures = ['LlamaForCausalLM']
    return config


def _llava_config(folder: Path) -> Any:
    from transformers import AutoConfig

    try:
        full = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f'cannot read the config of {folder}: {exc}') from exc
    text = full.get_text_config()
    kind = str(getattr(text, 'model_type', ''))
    if kind not in CAUSAL_LM:
        raise CheckpointError(
            f'{folder}: the text model is {kind!r}; exportable: {sorted(CAUSAL_LM)}'
        )
    text = type(text).from_dict(text.to_dict())  # a copy, standing alone
    text.architectures = [CAUSAL_LM[kind]]
    dtype = getattr(full, 'dtype', None) or getattr(full, 'torch_dtype', None)
    if dtype is not None:
        text.dtype = dtype
    return text


def source_format(folder: Path) -> str:
    """'flash_vstream' or 'llava' from config.json's model_type; CheckpointError otherwise."""
    kind = ckpt.read_json(folder / 'config.json').get('model_type')
    if kind == MODEL_TYPE:
        return 'flash_vstream'
    if kind in LLAVA_TYPES:
        return 'llava'
    raise CheckpointError(
        f'{folder}: model_type {kind!r} is neither a Flash-VStream v1 checkpoint '
        f'({MODEL_TYPE!r}) nor a LLaVA-family one {list(LLAVA_TYPES)}'
    )


def export_lm(source: Path, out: Path, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Write the language model of ``source`` into ``out`` (created; must not exist or be
    empty). ``dtype``: convert the weights (None: keep the checkpoint's). Returns a summary
    (format, architecture, tensors, bytes, seconds)."""
    start = time.perf_counter()
    fmt = source_format(source)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f'{out} exists and is not empty: choose a new folder')
    if fmt == 'flash_vstream':
        config, rename = _v1_config(ckpt.read_json(source / 'config.json'), str(source)), v1_rename
    else:
        config, rename = _llava_config(source), llava_rename
    if dtype is not None:
        config.dtype = dtype
    out.mkdir(parents=True, exist_ok=True)
    tensors, total = _write_weights(source, out, rename, dtype)
    if 'lm_head.weight' not in tensors and not getattr(config, 'tie_word_embeddings', False):
        raise CheckpointError(f'{source}: no lm_head.weight and the embeddings are not tied')
    if 'model.embed_tokens.weight' not in tensors:
        raise CheckpointError(f'{source}: no language-model embedding table in the weights')
    config.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    summary = {
        'format': fmt,
        'architecture': config.architectures[0],
        'tensors': len(tensors),
        'bytes': total,
        'seconds': round(time.perf_counter() - start, 2),
    }
    log.info('exported the language model of %s to %s: %s', source, out, summary)
    return summary


def _write_weights(
    source: Path, out: Path, rename: Rename, dtype: torch.dtype | None
) -> tuple[dict[str, str], int]:
    """One output safetensors shard per input shard (LM tensors only) + the index."""
    from safetensors.torch import save_file

    shards = ckpt.shard_files(source)
    weight_map: dict[str, str] = {}
    total, written = 0, 0
    for path in shards:
        part: dict[str, torch.Tensor] = {}
        for name, tensor in ckpt.read_shard(path).items():
            target = rename(name)
            if target is None:
                continue
            if target in weight_map or target in part:
                raise CheckpointError(f'{source}: {target} appears twice (from {name})')
            t = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
            part[target] = t.contiguous()
        if not part:
            continue
        written += 1
        fname = f'model-{written:05d}.safetensors'  # renamed with the count below
        save_file(part, str(out / fname), metadata={'format': 'pt'})
        weight_map.update(dict.fromkeys(part, fname))
        total += sum(t.numel() * t.element_size() for t in part.values())
        del part
    if not weight_map:
        raise CheckpointError(f'{source}: no language-model tensors found')
    final = {}
    for i in range(1, written + 1):
        old = f'model-{i:05d}.safetensors'
        new = f'model-{i:05d}-of-{written:05d}.safetensors'
        (out / old).rename(out / new)
        final[old] = new
    weight_map = {k: final[v] for k, v in weight_map.items()}
    index = {'metadata': {'total_size': total}, 'weight_map': dict(sorted(weight_map.items()))}
    (out / 'model.safetensors.index.json').write_text(json.dumps(index, indent=2))
    return weight_map, total
