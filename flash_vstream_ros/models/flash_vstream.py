"""Flash-VStream v1 (``IVGSZ/Flash-VStream-7b``) from transformers parts, no research code.

CLIP ViT encoder (second-to-last layer, patch tokens) -> STAR memory tokens (kept by the memory)
-> two-layer GELU projector -> Llama (Vicuna v1.5) with the vicuna_v1 prompt, memory tokens in
place of ``<image>``. The abstract memory's learned q/k projections come with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import logging
from pathlib import Path
import time
from typing import Any

import numpy as np
import torch

from flash_vstream_ros.errors import CheckpointError
from flash_vstream_ros.models import checkpoint as ckpt
from flash_vstream_ros.models.base import (
    Generation,
    GenerationRequest,
    PromptContext,
    StopCheck,
    TokenCallback,
)
from flash_vstream_ros.models.decoder import TextDecoder, TorchDecoder
from flash_vstream_ros.models.preprocess import ImageSpec, preprocess
from flash_vstream_ros.models.prompt import vicuna_v1
from flash_vstream_ros.models.v1_format import (
    VISION_PREFIX,
    V1Modules,
    V1Spec,
    build_modules,
    infer_vision_config,
    make_rename,
)

log = logging.getLogger(__name__)


class FlashVStreamModel:
    """A loaded v1 model behind the VisionLanguageModel protocol."""

    family = 'flash_vstream'

    def __init__(
        self,
        spec: V1Spec,
        modules: V1Modules,
        tokenizer: Any,
        image: ImageSpec,
        name: str = '',
        decoder: TextDecoder | None = None,
    ) -> None:
        """``decoder``: what answers (None: the torch LM in ``modules.lm``; a GgufDecoder
        when the language model is a GGUF file and ``modules.lm`` is None)."""
        if modules.vision is None:
            raise CheckpointError('a v1 model needs a vision tower')
        self.spec, self.modules, self.tokenizer, self.image = spec, modules, tokenizer, image
        self.name = name
        first = next(modules.projector.parameters())
        self.device, self.dtype = first.device, first.dtype
        vcfg = modules.vision.config
        _check_select_layer(spec.select_layer, int(vcfg.num_hidden_layers), name)
        side = vcfg.image_size // vcfg.patch_size
        self.feature_grid = (side, side)
        self.feature_dim = spec.mm_hidden_size
        self.eos_ids = _eos_ids(tokenizer, spec.raw)
        self.decoder: TextDecoder = decoder or TorchDecoder(modules.lm, tokenizer, self.eos_ids)

    def encode(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames (H_i, W_i, 3) -> patch maps (B, h, w, D) on the model's device."""
        assert self.modules.vision is not None
        pixels = preprocess(frames, self.image, self.device, self.dtype)  # (B, 3, S, S)
        with torch.inference_mode():
            out = self.modules.vision(pixel_values=pixels, output_hidden_states=True)
            feats = out.hidden_states[self.spec.select_layer][:, 1:]  # (B, h*w, D), CLS dropped
        return feats.reshape(len(frames), *self.feature_grid, feats.shape[-1])  # (B, h, w, D)

    def memory_qk(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        return self.modules.attention.q_proj, self.modules.attention.k_proj

    def memory_overrides(self) -> dict[str, Any]:
        return self.spec.memory_overrides()

    def answer(
        self,
        tokens: torch.Tensor,
        question: str,
        context: PromptContext,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> Generation:
        """Answer from memory tokens (N, D) in readout order."""
        before, after = self.prompt_ids(question, context, request.time_context)
        with torch.inference_mode():
            visual = self.modules.projector(tokens.to(self.device, self.dtype))  # (N, H)
        return self.decoder.generate([before, visual, after], request, on_token, should_stop)

    def prompt_ids(
        self, question: str, context: PromptContext, time_context: bool = False
    ) -> tuple[list[int], list[int]]:
        """Token ids before and after the memory tokens, as ``tokenizer_image_token`` makes them.

        The research code tokenizes each side of ``<image>`` with BOS and keeps BOS only at the
        start: the text before gets special tokens, the text after does not.
        """
        before, after = vicuna_v1(question, context, time_context)
        first = self.tokenizer(before, add_special_tokens=True)['input_ids']
        return list(first), list(self.tokenizer(after, add_special_tokens=False)['input_ids'])

    def compile_encoder(self) -> None:
        """torch.compile the vision tower (CUDA; the first encode of each batch size is slow)."""
        self.modules.vision = torch.compile(self.modules.vision, dynamic=False)

    def parameter_bytes(self) -> int:
        return sum(
            p.numel() * p.element_size() for p in self.modules.parameters() if not p.is_meta
        )

    def close(self) -> None:
        self.decoder.close()
        self.modules.to('meta')
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()


def _check_select_layer(layer: int, layers: int, where: str) -> None:
    """The tower has ``layers + 1`` hidden states (embeddings first); refuse other indices."""
    if not -(layers + 1) <= layer <= layers:
        raise CheckpointError(
            f'{where}: config.json mm_vision_select_layer={layer} is not supported; '
            f'supported: -{layers + 1} .. {layers} (the vision tower has {layers} layers)'
        )


def eos_ids(tokenizer: Any, raw: dict[str, Any]) -> set[int]:
    """End-of-answer ids: the tokenizer's EOS and config.json's eos_token_id."""
    return _eos_ids(tokenizer, raw)


def _eos_ids(tokenizer: Any, raw: dict[str, Any]) -> set[int]:
    ids = {tokenizer.eos_token_id, raw.get('eos_token_id')}
    return {int(i) for i in ids if isinstance(i, int)}


def load_flash_vstream(
    folder: Path,
    device: torch.device,
    dtype: torch.dtype,
    vision_tower: str = '',
    offline: bool = True,
) -> FlashVStreamModel:
    """Load a v1 checkpoint folder; the CLIP tower is embedded or comes from its own folder."""
    start = time.perf_counter()
    spec = V1Spec.parse(ckpt.read_json(folder / 'config.json'), str(folder))
    shapes = ckpt.tensor_shapes(folder, VISION_PREFIX)
    tower = vision_tower or spec.vision_tower
    if shapes:
        modules = build_modules(
            spec, _embedded_vision_config(shapes, tower), device, dtype, init=False
        )
    else:
        modules = build_modules(spec, None, device, dtype, init=False)
        modules.vision = _load_tower(tower, device, dtype, offline, str(folder))
    tied = bool(getattr(modules.lm.config, 'tie_word_embeddings', False))
    optional = (() if shapes else ('vision.',)) + (('lm.lm_head.',) if tied else ())
    ckpt.load_into(
        modules, ckpt.iter_checkpoint(folder), make_rename(modules), str(folder), optional
    )
    _tie_if_needed(modules)
    image = (
        ImageSpec.from_folder(Path(tower), _clip_spec(modules))
        if Path(tower).is_dir()
        else _clip_spec(modules)
    )
    tokenizer = load_tokenizer(folder, modules.lm.config)
    model = FlashVStreamModel(spec, modules, tokenizer, image, str(folder))
    log.info(
        'loaded Flash-VStream v1 from %s on %s/%s in %.1f s (%.2f GB)',
        folder,
        device,
        dtype,
        time.perf_counter() - start,
        model.parameter_bytes() / 1e9,
    )
    return model


def _embedded_vision_config(shapes: dict[str, tuple[int, ...]], tower: str) -> Any:
    if tower and (Path(tower) / 'config.json').is_file():
        from transformers import CLIPVisionConfig

        return CLIPVisionConfig.from_pretrained(tower)
    return infer_vision_config(shapes)


def _load_tower(
    tower: str, device: torch.device, dtype: torch.dtype, offline: bool, where: str
) -> torch.nn.Module:
    """The CLIP vision tower from its own folder (or hub id when online)."""
    from transformers import CLIPVisionModel

    if not tower:
        raise CheckpointError(
            f'{where} has no embedded vision tower and no mm_vision_tower; '
            'set model.vision_tower to a local CLIP folder'
        )
    if offline and not Path(tower).is_dir():
        raise CheckpointError(
            f'{where} has no embedded vision tower and {tower!r} is not a '
            'local folder (offline): set model.vision_tower to a CLIP folder'
        )
    try:
        model = CLIPVisionModel.from_pretrained(tower, dtype=dtype, local_files_only=offline)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f'cannot load the vision tower {tower!r}: {exc}') from exc
    tower_model: Any = model
    return tower_model.to(device).eval()


def _tie_if_needed(modules: V1Modules) -> None:
    if getattr(modules.lm.config, 'tie_word_embeddings', False):
        modules.lm.tie_weights()


def clip_spec(modules: V1Modules) -> ImageSpec:
    """The CLIP preprocessing of the tower's own image size (no preprocessor_config.json)."""
    return _clip_spec(modules)


def _clip_spec(modules: V1Modules) -> ImageSpec:
    assert modules.vision is not None
    side = int(modules.vision.config.image_size)
    return ImageSpec(size=side, crop=side)


# module -> pip package that a SentencePiece-only tokenizer needs
SENTENCEPIECE_PACKAGES = {'sentencepiece': 'sentencepiece', 'google.protobuf': 'protobuf'}


def load_tokenizer(folder: Path, config: Any = None) -> Any:
    """The folder's tokenizer (offline); CheckpointError when absent or unreadable.

    A folder with only a SentencePiece ``tokenizer.model`` (as the released v1 checkpoint has)
    needs the ``sentencepiece`` and ``protobuf`` packages to be converted; checked first, so
    that the error names them rather than a conversion failure deep in transformers.
    """
    from transformers import AutoTokenizer

    slow_only = (folder / 'tokenizer.model').is_file() and not (
        folder / 'tokenizer.json'
    ).is_file()
    hint = ' (a SentencePiece tokenizer.model needs: pip install sentencepiece protobuf)'
    missing = missing_packages(SENTENCEPIECE_PACKAGES) if slow_only else []
    if missing:
        raise CheckpointError(
            f'cannot load the tokenizer of {folder}: it has only a SentencePiece '
            f'tokenizer.model and these are not installed: {", ".join(missing)}{hint}'
        )
    extra = {'config': config} if config is not None else {}
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **extra)
    except (OSError, ValueError, TypeError, ImportError) as exc:
        raise CheckpointError(
            f'cannot load the tokenizer of {folder}: {exc}{hint if slow_only else ""}'
        ) from exc


def missing_packages(modules: Mapping[str, str]) -> list[str]:
    """Pip names of the modules (module -> pip name) not found (by find_spec, not imported)."""
    from importlib.util import find_spec

    missing = []
    for name, package in modules.items():
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package is missing, or a broken stub
            found = False
        if not found:
            missing.append(package)
    return missing
