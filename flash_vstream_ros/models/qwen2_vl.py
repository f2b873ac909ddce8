"""The Qwen2-VL family: Flash-VStream-Qwen (v2), Qwen2-VL and Qwen2.5-VL checkpoints.

Where the memory sits, as in v2 (research code ``Flash-VStream-Qwen/models/
vstream_qwen2vl_model.py``, ``FlashMemory``): after the vision tower's blocks and *before* its
``PatchMerger``. So :meth:`QwenVLModel.encode` returns each frame's pre-merger patch features,
one memory token per merged unit (its 2x2 patches' features concatenated: D = 4 x the ViT
width, a 16x16 map for a 448 px frame); the memory clusters and pools those, and
:meth:`QwenVLModel.answer` runs the merger on the tokens it is given, then the language model
with M-RoPE positions that carry each token's frame time (models/qwen_positions.py).

v2's code against its paper (arXiv 2506.23825) and the DESIGN notes, and what we chose:

* Order: the paper describes the memory as the synopsis (CSM) plus the detail (DAM) tokens;
  the code feeds ``cat([DAM, CSM])`` (``cat_spa_tem``): detail first. The weights were trained
  on the code's order, so ``flash_vstream_qwen2_vl`` checkpoints get detail first
  (``am_rope`` layout); plain Qwen2-VL / Qwen2.5-VL keep the memory's readout order.
* AM-RoPE: the code gives a DAM token (base + t, row, col) and a CSM token (base + D + t, row,
  col), D = number of DAM tokens, t = frame index; the text after keeps the position of the
  code's sequential layout. We do the same, with t from the frame's stamp (0.5 index per
  second: one temporal patch of 2 frames at v2's 1 fps) instead of a video's frame index.
* Half resolution: the code runs the tower a second time on 2x2 average-pooled *pixels* for
  the synopsis; we pool the full-resolution features (one tower pass per frame, as the memory
  takes one map per frame). Frames are still images (repeated over the temporal patch), where
  the code pairs consecutive frames into one temporal patch.
* Prompt: v2's evaluation puts ``Answer the following open-ended question based on the
  video.`` before an open question, in the Qwen2-VL chat template with one video; we use that
  for v2 checkpoints and the plain template for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    TokenGroup,
)
from flash_vstream_ros.models.decoder import TextDecoder, TorchDecoder
from flash_vstream_ros.models.flash_vstream import load_tokenizer
from flash_vstream_ros.models.llava import _check_loading_info, _eos_ids, find_chat_template
from flash_vstream_ros.models.prompt import user_text
from flash_vstream_ros.models.qwen_positions import Block, grid_of, prompt_positions, v2_order
from flash_vstream_ros.models.qwen_vision import QwenImageSpec, frames_to_patches

log = logging.getLogger(__name__)
V2_TYPE = 'flash_vstream_qwen2_vl'
# model_type -> (transformers class, position layout)
VARIANTS = {
    V2_TYPE: ('Qwen2VLForConditionalGeneration', 'am_rope'),
    'qwen2_vl': ('Qwen2VLForConditionalGeneration', 'mrope'),
    'qwen2_5_vl': ('Qwen2_5_VLForConditionalGeneration', 'mrope'),
}
V2_MEMORY = {  # DEFAULT_FLASH_MEMORY_CONFIG of the research code (flash_memory_constants.py)
    'flash_memory_temporal_length': 120,
    'flash_memory_temporal_method': 'kmeans_ordered',
    'flash_memory_temporal_poolsize': 2,
    'flash_memory_spatial_length': 60,
    'flash_memory_spatial_method': 'klarge_retrieve',
}
V2_QUESTION = 'Answer the following open-ended question based on the video. '
V2_PER_SECOND = 0.5  # temporal positions per second: 1 fps frames, 2 frames per index
VIDEO_PAD = '<|video_pad|>'


class QwenVLModel:
    """A loaded Qwen2-VL-family model behind the VisionLanguageModel protocol."""

    family = 'qwen2_vl'

    def __init__(
        self, model: Any, tokenizer: Any, raw: dict[str, Any], image: QwenImageSpec, name: str
    ) -> None:
        self.model, self.tokenizer, self.raw, self.image = model, tokenizer, raw, image
        self.name = name
        self.model_type = str(raw.get('model_type'))
        self.layout = VARIANTS[self.model_type][1]
        inner = getattr(model, 'model', model)  # transformers >= 4.52: model.model.visual
        self.visual = inner.visual if hasattr(inner, 'visual') else model.visual
        self.merger = self.visual.merger
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype
        self.vit_dim = int(self.merger.ln_q.weight.shape[0])  # C: the ViT width
        self.unit = image.merge * image.merge  # patches per memory token
        self.side = image.stream_side()
        grid = self.side // image.factor
        self.feature_grid = (grid, grid)
        self.feature_dim = self.unit * self.vit_dim
        vcfg = raw.get('vision_config') or {}
        self.windowed = self.model_type == 'qwen2_5_vl'
        self.per_second = float(vcfg.get('tokens_per_second', V2_PER_SECOND))
        self.chat_template = find_chat_template(Path(name), tokenizer) if name else None
        self.eos_ids = _eos_ids(model, tokenizer)
        self.decoder: TextDecoder = TorchDecoder(model, tokenizer, self.eos_ids)

    # ------------------------------------------------------------------ vision

    def encode(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames (H_i, W_i, 3) -> pre-merger maps (B, g, g, 4C) on the device."""
        rows, grids = frames_to_patches(frames, self.image, self.side)
        pixels = torch.from_numpy(rows).to(self.device, self.dtype)  # (B*G*G, 3*2*14*14)
        grid_thw = torch.from_numpy(grids).to(self.device)  # (B, 3)
        captured: list[torch.Tensor] = []
        hook = self.merger.register_forward_hook(lambda _m, args, _o: captured.append(args[0]))
        try:
            with torch.inference_mode():
                self.visual(pixels, grid_thw=grid_thw)
        finally:
            hook.remove()
        units = captured[0].reshape(-1, self.unit, self.vit_dim)  # (B*g*g, 4, C)
        if self.windowed:  # Qwen2.5-VL runs its blocks in window order: back to raster
            units = units[_window_reverse(self.visual, grid_thw).to(units.device)]
        g = self.feature_grid[0]
        return units.reshape(len(frames), g, g, self.feature_dim)  # (B, g, g, 4C)

    def memory_qk(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        return None

    def memory_overrides(self) -> dict[str, Any]:
        """The synopsis memory at v2's sizes (from the checkpoint's flash_memory_config)."""
        return memory_overrides(self.raw, self.feature_grid[0])

    # ------------------------------------------------------------------ answering

    def answer(
        self,
        tokens: torch.Tensor,
        question: str,
        context: PromptContext,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> Generation:
        """Answer from memory tokens (N, 4C) in readout order, times from ``context.layout``."""
        blocks, starts = _blocks(tokens.shape[0], context)
        order = v2_order(blocks) if self.layout == 'am_rope' else list(range(len(blocks)))
        rows = [tokens[starts[i] : starts[i] + blocks[i].tokens] for i in order]
        ordered = torch.cat(rows) if rows else tokens  # (N, 4C)
        with torch.inference_mode():
            x = ordered.to(self.device, self.dtype).reshape(-1, self.vit_dim)  # (4N, C)
            visual = self.merger(x)  # (N, H)
        before, after = self.prompt_ids(question, context, request.time_context)
        positions = prompt_positions(
            len(before), [blocks[i] for i in order], len(after), self.per_second, self.layout
        )
        return self.decoder.generate(
            [before, visual, after], request, on_token, should_stop, positions=positions
        )

    def prompt_ids(
        self, question: str, context: PromptContext, time_context: bool = False
    ) -> tuple[list[int], list[int]]:
        """Token ids before and after the memory tokens (the chat template with one video)."""
        text = user_text(question, context, time_context)
        if self.layout == 'am_rope':
            text = V2_QUESTION + text
        before, after = self._prompt(text)
        ids = self.tokenizer(before, add_special_tokens=False)['input_ids']
        return list(ids), list(self.tokenizer(after, add_special_tokens=False)['input_ids'])

    def _prompt(self, text: str) -> tuple[str, str]:
        if self.chat_template:
            messages = [
                {'role': 'user', 'content': [{'type': 'video'}, {'type': 'text', 'text': text}]}
            ]
            rendered = str(
                self.tokenizer.apply_chat_template(
                    messages,
                    chat_template=self.chat_template,
                    tokenize=False,
                    add_generation_prompt=True,
                )
            )
            if VIDEO_PAD in rendered:
                before, after = rendered.split(VIDEO_PAD, 1)
                return before, after.replace(VIDEO_PAD, '')
            log.warning('the chat template drops the video; using the Qwen2-VL template')
        return (
            '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
            '<|im_start|>user\n<|vision_start|>',
            f'<|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n',
        )

    # ------------------------------------------------------------------ resources

    def compile_encoder(self) -> None:
        """torch.compile the vision tower (CUDA; the first encode of each batch size is slow)."""
        self.visual = torch.compile(self.visual, dynamic=False)

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters() if not p.is_meta)

    def close(self) -> None:
        self.decoder.close()
        self.model.to('meta')
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()


def _blocks(n: int, context: PromptContext) -> tuple[list[Block], list[int]]:
    """The prompt's memory elements (from the layout, else one block) and their token starts."""
    groups = context.layout
    if sum(g.tokens for g in groups) != n:
        if groups:
            log.warning(
                'token layout covers %d of %d tokens; one block', sum(g.tokens for g in groups), n
            )
        stamp = context.span[0] if context.span else 0
        groups = (TokenGroup('memory', n, stamp),) if n else ()
    blocks, starts, at = [], [], 0
    for g in groups:
        blocks.append(Block(g.part, *grid_of(g.tokens), g.stamp))
        starts.append(at)
        at += g.tokens
    return blocks, starts


def _window_reverse(visual: Any, grid_thw: torch.Tensor) -> torch.Tensor:
    """Qwen2.5-VL: raster order of merged units from the tower's window order."""
    try:  # transformers 5
        from transformers.vision_utils import get_vision_window_index

        index, _ = get_vision_window_index(
            grid_thw,
            spatial_merge_size=visual.spatial_merge_size,
            window_size=visual.window_size,
            patch_size=visual.patch_size,
        )
    except ImportError:  # transformers 4
        index, _ = visual.get_window_index(grid_thw)
    return torch.argsort(index)


def memory_overrides(raw: dict[str, Any], grid: int) -> dict[str, Any]:
    """Synopsis sizes from ``vision_config.flash_memory_config`` (v2's defaults without one)."""
    vcfg = raw.get('vision_config') or {}
    fm = {**V2_MEMORY, **(vcfg.get('flash_memory_config') or {})}
    if fm['flash_memory_temporal_method'] != 'kmeans_ordered' or not str(
        fm['flash_memory_spatial_method']
    ).startswith('klarge_retrieve'):
        log.warning(
            'flash_memory_config %s: only kmeans_ordered + klarge_retrieve are implemented', fm
        )
    pool = max(1, int(fm['flash_memory_temporal_poolsize']))
    return {
        'memory.kind': 'synopsis',
        'memory.synopsis.clusters': max(1, int(fm['flash_memory_temporal_length']) // 2),
        'memory.synopsis.detail_frames': int(fm['flash_memory_spatial_length']) // 2,
        'memory.synopsis.detail_size': grid,
        'memory.synopsis.cluster_size': max(1, grid // pool),
    }


def load_qwen2_vl(folder: Path, device: torch.device, dtype: torch.dtype) -> QwenVLModel:
    """Load a Qwen2-VL-family folder (hub layout or ``save_pretrained``); strict about weights."""
    import transformers

    start = time.perf_counter()
    raw = ckpt.read_json(folder / 'config.json')
    model_type = raw.get('model_type')
    if model_type not in VARIANTS:
        raise CheckpointError(
            f'{folder}: model_type {model_type!r} is not a Qwen2-VL-family model '
            f'({sorted(VARIANTS)})'
        )
    cls = getattr(transformers, VARIANTS[str(model_type)][0])
    ckpt.tensor_shapes(folder, '')  # clear errors for missing or truncated weight files
    try:  # v2's config is a Qwen2VLConfig with flash_memory_config in its vision_config
        config = cls.config_class.from_dict({k: v for k, v in raw.items() if k != 'model_type'})
        model, info = cls.from_pretrained(
            str(folder),
            config=config,
            dtype=dtype,
            local_files_only=True,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported in the loading info, refused below
        )
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise CheckpointError(f'cannot load {folder}: {type(exc).__name__}: {exc}') from exc
    _check_loading_info(info, folder)
    model = model.to(device).eval()
    qwen = QwenVLModel(
        model, load_tokenizer(folder), raw, QwenImageSpec.from_folder(folder), str(folder)
    )
    log.info(
        'loaded %s (%s) from %s on %s/%s in %.1f s (%.2f GB)',
        cls.__name__,
        model_type,
        folder,
        device,
        dtype,
        time.perf_counter() - start,
        qwen.parameter_bytes() / 1e9,
    )
    return qwen
