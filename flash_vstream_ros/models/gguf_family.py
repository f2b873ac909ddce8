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

GGUF_FAMILIES = ('flash_vstream',)


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
    with sidecar_folder(data) as folder:
        model = _load_v1(cfg, folder, data['state_dict'], device, dtype, str(sidecar))
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
