"""transformers LLaVA-style models (LLaVA 1.5, LLaVA-OneVision, ...) behind the protocol.

The memory is built on the vision tower's patch features (its ``vision_feature_layer`` and
select strategy, as an (h, w, D) map); answering projects the memory tokens through the model's
own ``multi_modal_projector`` and puts them where the chat template puts the image tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
import logging
import math
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
from flash_vstream_ros.models.flash_vstream import load_tokenizer
from flash_vstream_ros.models.preprocess import (
    SIGLIP_MEAN,
    SIGLIP_STD,
    ImageSpec,
    preprocess,
)
from flash_vstream_ros.models.prompt import IMAGE_TOKEN, user_text

log = logging.getLogger(__name__)
CLASSES = {
    'llava': 'LlavaForConditionalGeneration',
    'llava_onevision': 'LlavaOnevisionForConditionalGeneration',
    'llava_next': 'LlavaNextForConditionalGeneration',
}


class LlavaModel:
    """A loaded LLaVA-family model behind the VisionLanguageModel protocol."""

    family = 'llava'

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image: ImageSpec,
        chat_template: str | None,
        name: str = '',
        decoder: TextDecoder | None = None,
    ) -> None:
        """``decoder``: what answers (None: the model's own language model through torch; a
        GgufDecoder when ``model`` holds only the vision tower and the projector)."""
        cfg = model.config
        self.model, self.tokenizer, self.image, self.name = model, tokenizer, image, name
        self.chat_template = chat_template
        inner = getattr(model, 'model', model)
        self.vision = inner.vision_tower
        self.projector = inner.multi_modal_projector
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype
        layer = cfg.vision_feature_layer
        self.layers = list(layer) if isinstance(layer, (list, tuple)) else [int(layer)]
        self.drop_cls = cfg.vision_feature_select_strategy == 'default'
        vcfg = cfg.vision_config
        side = int(vcfg.image_size) // int(vcfg.patch_size)
        self.feature_grid = (side, side)
        self.feature_dim = int(vcfg.hidden_size) * len(self.layers)
        image_id = getattr(cfg, 'image_token_id', None) or getattr(cfg, 'image_token_index', None)
        token = tokenizer.convert_ids_to_tokens(image_id) if image_id is not None else None
        self.image_token = token if isinstance(token, str) else IMAGE_TOKEN
        self.eos_ids = _eos_ids(model, tokenizer)
        self.decoder: TextDecoder = decoder or TorchDecoder(model, tokenizer, self.eos_ids)

    def encode(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames (H_i, W_i, 3) -> patch maps (B, h, w, D) on the model's device."""
        pixels = preprocess(frames, self.image, self.device, self.dtype)  # (B, 3, S, S)
        with torch.inference_mode():
            out = self.vision(pixel_values=pixels, output_hidden_states=True)
            feats = torch.cat([out.hidden_states[i] for i in self.layers], -1)  # (B, T, D)
        if self.drop_cls:
            feats = feats[:, 1:]
        side = math.isqrt(feats.shape[1])
        if (side, side) != self.feature_grid:
            raise CheckpointError(
                f'the vision tower gave {feats.shape[1]} patch tokens, not a '
                f'{self.feature_grid} grid'
            )
        return feats.reshape(len(frames), side, side, feats.shape[-1])  # (B, h, w, D)

    def memory_qk(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        return None

    def memory_overrides(self) -> dict[str, Any]:
        return {}

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
            visual = self.projector(tokens.to(self.device, self.dtype).unsqueeze(0))[0]  # (N, H)
        return self.decoder.generate([before, visual, after], request, on_token, should_stop)

    def prompt_ids(
        self, question: str, context: PromptContext, time_context: bool = False
    ) -> tuple[list[int], list[int]]:
        """Token ids before and after the memory tokens, as the model's processor makes them."""
        before, after, special = self._prompt(user_text(question, context, time_context))
        first = self.tokenizer(before, add_special_tokens=special)['input_ids']
        return list(first), list(self.tokenizer(after, add_special_tokens=False)['input_ids'])

    def _prompt(self, text: str) -> tuple[str, str, bool]:
        """(text before the image, text after, add special tokens) from the chat template.

        The processor tokenizes the rendered prompt with the tokenizer's special tokens (BOS
        for Llama/Vicuna) unless the template already starts with BOS (transformers'
        ``apply_chat_template`` rule); the llava-1.5 hub template has none, so BOS is added.
        Without a template: the llava-1.5 prompt format of the model cards.
        """
        if self.chat_template:
            rendered = self._render([{'type': 'image'}, {'type': 'text', 'text': text}])
            if self.image_token not in rendered:
                rendered = self._render(f'{self.image_token}\n{text}')
            if self.image_token in rendered:
                before, after = rendered.split(self.image_token, 1)
                bos = getattr(self.tokenizer, 'bos_token', None)
                return before, after, not (bos and rendered.startswith(bos))
            log.warning('the chat template drops the image; using a plain template')
        return 'USER: ', f'\n{text} ASSISTANT:', True

    def _render(self, content: Any) -> str:
        messages = [{'role': 'user', 'content': content}]
        return str(
            self.tokenizer.apply_chat_template(
                messages,
                chat_template=self.chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
        )

    def compile_encoder(self) -> None:
        """torch.compile the vision tower (CUDA; the first encode of each batch size is slow)."""
        self.vision = torch.compile(self.vision, dynamic=False)

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters() if not p.is_meta)

    def close(self) -> None:
        self.decoder.close()
        self.model.to('meta')
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-answer ids: the tokenizer's, the generation config's and the text config's."""
    return _eos_ids(model, tokenizer)


def default_image_spec(model: Any) -> ImageSpec:
    """The preprocessing of the tower's config when the folder has no preprocessor_config."""
    return _default_image_spec(model)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    found: list[Any] = [tokenizer.eos_token_id]
    for cfg in (getattr(model, 'generation_config', None), model.config.get_text_config()):
        value = getattr(cfg, 'eos_token_id', None)
        found.extend(value if isinstance(value, (list, tuple)) else [value])
    return {int(i) for i in found if isinstance(i, int)}


def find_chat_template(folder: Path, tokenizer: Any) -> str | None:
    """The tokenizer's chat template, else the processor's (chat_template.jinja / .json)."""
    if getattr(tokenizer, 'chat_template', None):
        return str(tokenizer.chat_template)
    if (folder / 'chat_template.jinja').is_file():
        return (folder / 'chat_template.jinja').read_text()
    if (folder / 'chat_template.json').is_file():
        value = json.loads((folder / 'chat_template.json').read_text()).get('chat_template')
        return str(value) if value else None
    return None


def _default_image_spec(model: Any) -> ImageSpec:
    vcfg = model.config.vision_config
    side = int(vcfg.image_size)
    if 'siglip' in str(getattr(vcfg, 'model_type', '')):
        return ImageSpec(size=0, crop=side, mean=SIGLIP_MEAN, std=SIGLIP_STD)
    return ImageSpec(size=side, crop=side)


def _model_class(folder: Path) -> Any:
    import transformers

    model_type = ckpt.read_json(folder / 'config.json').get('model_type')
    if model_type not in CLASSES:
        raise CheckpointError(
            f'{folder}: model_type {model_type!r} is not a supported '
            f'LLaVA-style model ({sorted(CLASSES)})'
        )
    return getattr(transformers, CLASSES[model_type])


def load_llava(folder: Path, device: torch.device, dtype: torch.dtype) -> LlavaModel:
    """Load a LLaVA-style model folder saved with ``save_pretrained``; strict about weights."""
    start = time.perf_counter()
    cls = _model_class(folder)
    ckpt.tensor_shapes(folder, '')  # clear errors for missing or truncated weight files
    try:
        model, info = cls.from_pretrained(
            str(folder),
            dtype=dtype,
            local_files_only=True,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported in the loading info, refused below
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f'cannot load {folder}: {type(exc).__name__}: {exc}') from exc
    _check_loading_info(info, folder)
    model = model.to(device).eval()
    tokenizer = load_tokenizer(folder)
    image = ImageSpec.from_folder(folder, _default_image_spec(model))
    llava = LlavaModel(model, tokenizer, image, find_chat_template(folder, tokenizer), str(folder))
    log.info(
        'loaded %s from %s on %s/%s in %.1f s (%.2f GB)',
        cls.__name__,
        folder,
        device,
        dtype,
        time.perf_counter() - start,
        llava.parameter_bytes() / 1e9,
    )
    return llava


def _check_loading_info(info: dict[str, Any], folder: Path) -> None:
    for key in ('missing_keys', 'unexpected_keys', 'mismatched_keys', 'error_msgs'):
        bad = sorted(str(k) for k in info.get(key) or [])
        if bad:
            raise CheckpointError(f'{folder}: {len(bad)} {key.replace("_", " ")}, e.g. {bad[:5]}')
