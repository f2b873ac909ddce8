"""A model family whose language model is a GGUF file (``model.decoder: gguf``).

The family's torch parts (vision tower, projector, abstract-memory q/k) come from the sidecar
that ``flash-vstream export-gguf`` writes beside the GGUF, with config.json and the tokenizer;
the language model is a :class:`~flash_vstream_ros.models.gguf.GgufDecoder`. The family object
is the same class as with torch (FlashVStreamModel), so the memory, readout and prompt are
exactly those of the torch backend; only what answers differs.
"""

from __future__ import annotations

import logging
from pathlib import Path
import time
from typing import Any

import torch

from flash_vstream_ros.config import ModelConfig
from flash_vstream_ros.errors import CheckpointError, ConfigError
from flash_vstream_ros.models import checkpoint as ckpt

log = logging.getLogger(__name__)

GGUF_FAMILIES = ('flash_vstream', 'llava')


def gguf_decoder(cfg: ModelConfig, tokenizer: Any = None, eos_ids: Any = ()) -> Any:
    """A GgufDecoder on ``cfg.gguf`` (the family's tokenizer decodes when given)."""
    from flash_vstream_ros.models.gguf import GgufDecoder

    g = cfg.gguf
    return GgufDecoder(
        g.path,
        n_gpu_layers=g.n_gpu_layers,
        n_ctx=g.n_ctx,
        n_threads=g.n_threads,
        kv_f32=g.kv_f32,
        tokenizer=tokenizer,
        eos_ids=eos_ids,
    )


def sidecar_of(cfg: ModelConfig) -> Path:
    from flash_vstream_ros.models.gguf_export import sidecar_path

    return Path(cfg.gguf.sidecar).expanduser() if cfg.gguf.sidecar else sidecar_path(cfg.gguf.path)


def load_gguf_family(cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> Any:
    """The family of the sidecar, its torch parts on ``device``, a GGUF decoder answering."""
    from flash_vstream_ros.models.gguf_export import read_sidecar, sidecar_folder

    if not cfg.gguf.path:
        raise ConfigError('model.decoder=gguf needs model.gguf.path (a GGUF file)')
    start = time.perf_counter()
    sidecar = sidecar_of(cfg)
    data = read_sidecar(sidecar)
    family = str(data.get('family'))
    if family not in GGUF_FAMILIES:
        raise CheckpointError(f'{sidecar}: family {family!r} has no GGUF loader ({GGUF_FAMILIES})')
    if cfg.family not in (family, 'tiny'):
        raise ConfigError(
            f'model.family is {cfg.family!r} but the sidecar {sidecar} is of family {family!r}'
        )
    load = _load_v1 if family == 'flash_vstream' else _load_llava
    with sidecar_folder(data) as folder:
        model = load(cfg, folder, data['state_dict'], device, dtype, str(sidecar))
    log.info(
        'loaded %s with %s (torch parts on %s/%s, %.2f GB) in %.1f s',
        family,
        model.decoder.name,
        device,
        dtype,
        model.parameter_bytes() / 1e9,
        time.perf_counter() - start,
    )
    return model


def _load_v1(
    cfg: ModelConfig,
    folder: Path,
    state: dict[str, torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
    where: str,
) -> Any:
    from transformers import LlamaConfig

    from flash_vstream_ros.models.flash_vstream import (
        FlashVStreamModel,
        clip_spec,
        eos_ids,
        load_tokenizer,
    )
    from flash_vstream_ros.models.v1_format import (
        VISION_PREFIX,
        V1Spec,
        build_parts,
        infer_vision_config,
        make_rename,
    )

    spec = V1Spec.parse(ckpt.read_json(folder / 'config.json'), where)
    shapes = {k: tuple(v.shape) for k, v in state.items() if k.startswith(VISION_PREFIX)}
    if not shapes:
        raise CheckpointError(f'{where} has no vision tower (export a checkpoint that embeds it)')
    parts = build_parts(spec, infer_vision_config(shapes), device, dtype)
    ckpt.load_into(parts, iter(state.items()), make_rename(parts), where)
    tokenizer = load_tokenizer(folder, LlamaConfig(**spec.llama_kwargs()))
    stops = eos_ids(tokenizer, spec.raw)
    decoder = gguf_decoder(cfg, tokenizer, stops)
    return FlashVStreamModel(
        spec, parts, tokenizer, clip_spec(parts), str(cfg.gguf.path), decoder=decoder
    )


class _LlavaParts(torch.nn.Module):
    """What LlavaModel reads of a LLaVA model, without its language model: ``model`` holds
    ``vision_tower`` and ``multi_modal_projector`` (state-dict names as the checkpoint's,
    less a leading ``model.``), plus ``config`` and ``generation_config``."""

    def __init__(self, config: Any, vision: torch.nn.Module, projector: torch.nn.Module) -> None:
        super().__init__()
        self.config = config
        self.generation_config: Any = None
        self.model = torch.nn.Module()
        self.model.vision_tower = vision
        self.model.multi_modal_projector = projector


def _load_llava(
    cfg: ModelConfig,
    folder: Path,
    state: dict[str, torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
    where: str,
) -> Any:
    import importlib

    from transformers import AutoConfig, AutoModel, GenerationConfig

    from flash_vstream_ros.models.flash_vstream import load_tokenizer
    from flash_vstream_ros.models.llava import (
        CLASSES,
        LlavaModel,
        default_image_spec,
        eos_ids,
        find_chat_template,
    )
    from flash_vstream_ros.models.preprocess import ImageSpec
    from flash_vstream_ros.models.v1_format import build_context

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    if config.model_type not in CLASSES:
        raise CheckpointError(f'{where}: model_type {config.model_type!r} is not LLaVA-style')
    module = importlib.import_module(
        f'transformers.models.{config.model_type}.modeling_{config.model_type}'
    )
    projector_cls = getattr(
        module,
        CLASSES[config.model_type].replace('ForConditionalGeneration', 'MultiModalProjector'),
    )
    with build_context(device, dtype, init=False):
        parts = _LlavaParts(
            config, AutoModel.from_config(config.vision_config), projector_cls(config)
        ).eval()
    if (folder / 'generation_config.json').is_file():
        parts.generation_config = GenerationConfig.from_pretrained(str(folder))

    # checkpoints name the tower's inner level (vision_model.); transformers 5's towers lack it
    level = hasattr(parts.model.vision_tower, 'vision_model')

    def rename(name: str) -> str | None:
        inner = name.removeprefix('model.')
        if not level:
            inner = inner.replace('vision_tower.vision_model.', 'vision_tower.', 1)
        if inner.startswith(('vision_tower.', 'multi_modal_projector.')):
            return 'model.' + inner
        return None  # e.g. LLaVA-OneVision's image_newline: not used by the memory readout

    ckpt.load_into(parts, iter(state.items()), rename, where)
    tokenizer = load_tokenizer(folder)
    image = ImageSpec.from_folder(folder, default_image_spec(parts))
    decoder = gguf_decoder(cfg, tokenizer, eos_ids(parts, tokenizer))
    return LlavaModel(
        parts,
        tokenizer,
        image,
        find_chat_template(folder, tokenizer),
        str(cfg.gguf.path),
        decoder=decoder,
    )
