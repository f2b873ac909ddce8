"""Model backends behind one protocol; :func:`load_model` picks one from the config.

Families: ``flash_vstream`` (a v1 checkpoint folder), ``llava`` (a transformers LLaVA-style
model folder), ``qwen2_vl`` (Flash-VStream-Qwen, Qwen2-VL and Qwen2.5-VL folders) and ``tiny``
(a tiny random model of ``tiny_family``, built once in ``cache_dir`` and loaded through the
real loader of that family). ``model.decoder`` picks what runs the language model: the
family's own (torch), an OpenAI-compatible server (remote, models/remote.py), or llama.cpp on
a GGUF file (gguf: the family's torch parts come from a GGUF sidecar, :mod:`.gguf_family`).
torch is imported here; transformers only when a model is loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from flash_vstream_ros.config import ModelConfig
from flash_vstream_ros.errors import CheckpointError, ConfigError
from flash_vstream_ros.models.base import (
    Generation,
    GenerationRequest,
    PromptContext,
    VisionLanguageModel,
)

if TYPE_CHECKING:
    from flash_vstream_ros.models.flash_vstream import FlashVStreamModel
    from flash_vstream_ros.models.llava import LlavaModel
    from flash_vstream_ros.models.qwen2_vl import QwenVLModel

__all__ = [
    'Generation',
    'GenerationRequest',
    'PromptContext',
    'VisionLanguageModel',
    'load_model',
    'resolve_device',
    'resolve_dtype',
]

log = logging.getLogger(__name__)
DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a ConfigError."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f'model.device {name!r} is not a torch device: {exc}') from exc
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ConfigError(f'model.device is {name!r} but CUDA is not available')
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' -> float16 on CUDA, float32 elsewhere; warns about bf16/fp16 on a CPU."""
    if name == 'auto':
        return torch.float16 if device.type == 'cuda' else torch.float32
    dtype = DTYPES[name]
    if device.type == 'cpu' and dtype != torch.float32:
        log.warning('model.dtype=%s on the CPU is usually much slower than float32', name)
    return dtype


def require_transformers_torch() -> None:
    """A ConfigError when transformers refuses this torch (transformers 5 disables torch older
    than 2.6, e.g. a Jetson's JetPack 6 build): it asks transformers itself, no version table."""
    import transformers
    from transformers.utils import is_torch_available

    if not is_torch_available():
        raise ConfigError(
            f'transformers {transformers.__version__} does not work with torch '
            f'{torch.__version__} (transformers 5 needs torch>=2.6): keep this torch and '
            "install 'transformers>=4.56,<5'"
        )


def load_model(cfg: ModelConfig) -> VisionLanguageModel:
    """Load (or, for family='tiny', build once and load) the configured model."""
    require_transformers_torch()
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    model: FlashVStreamModel | LlavaModel | QwenVLModel
    if cfg.family == 'demo':  # real parts from PyPI wheels; answers with its own torch LM
        if cfg.decoder != 'torch':
            raise ConfigError(
                'model.family demo brings its own decoder: leave model.decoder torch'
            )
        from flash_vstream_ros.models.demo import load_demo

        return load_demo(cfg.path, device)
    if cfg.decoder == 'gguf':  # the language model is a GGUF file, the rest in its sidecar
        from flash_vstream_ros.models.gguf_family import load_gguf_family

        model = load_gguf_family(cfg, device, dtype)
        if cfg.compile and device.type == 'cuda':
            model.compile_encoder()
        return model
    family, folder = _family_and_folder(cfg)
    if family == 'flash_vstream':
        from flash_vstream_ros.models.flash_vstream import load_flash_vstream

        model = load_flash_vstream(folder, device, dtype, cfg.vision_tower, _offline(cfg))
    elif family == 'qwen2_vl':
        from flash_vstream_ros.models.qwen2_vl import load_qwen2_vl

        model = load_qwen2_vl(folder, device, dtype)
    else:
        from flash_vstream_ros.models.llava import load_llava

        model = load_llava(folder, device, dtype)
    if cfg.decoder == 'remote':
        from flash_vstream_ros.models.remote import attach_remote

        attach_remote(model, cfg.remote)
    if cfg.compile:
        if device.type == 'cuda':
            model.compile_encoder()
        else:
            log.warning('model.compile is ignored on %s (CUDA only)', device)
    return model


def _family_and_folder(cfg: ModelConfig) -> tuple[str, Path]:
    if cfg.family == 'tiny':
        if cfg.path:
            raise ConfigError(
                f'model.path must be empty with family=tiny (the tiny model is '
                f'built in model.cache_dir), got {cfg.path!r}'
            )
        from flash_vstream_ros.models.tiny import LOADED_AS, ensure_tiny

        folder = ensure_tiny(cfg.cache_dir, cfg.tiny_family)
        return LOADED_AS.get(cfg.tiny_family, cfg.tiny_family), folder
    if not cfg.path:
        raise ConfigError(f'model.path is empty: family={cfg.family} needs a checkpoint folder')
    return cfg.family, _local_folder(cfg.path, _offline(cfg))


def _offline(cfg: ModelConfig) -> bool:
    import os

    return cfg.offline or os.environ.get('HF_HUB_OFFLINE', '') not in ('', '0')


def _local_folder(path: str, offline: bool) -> Path:
    """A local folder as is; a hub id downloaded to the hub cache unless offline."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        return folder
    if offline or path.startswith(('/', '.', '~')):
        raise CheckpointError(
            f'checkpoint folder {path!r} does not exist'
            + (' (offline: hub ids are not fetched)' if offline else '')
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=path))
    except Exception as exc:  # network and hub errors come in many types
        raise CheckpointError(f'cannot fetch {path!r} from the hub: {exc}') from exc
