"""The on-disk format of Flash-VStream v1 checkpoints (``IVGSZ/Flash-VStream-7b``), as facts.

config.json is a Llama config with ``model_type "vstream"`` plus the multimodal keys below;
weights use the names of the research code's ``VStreamLlamaForCausalLM``. This module builds
the equivalent modules from transformers parts and maps the names; it imports transformers
only inside functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass
import importlib
import math
import re
from typing import Any

import torch
from torch import nn

from flash_vstream_ros.errors import CheckpointError

MODEL_TYPE = 'vstream'
# Multimodal keys of the released config and what the research code used (train_and_eval.sh).
MM_DEFAULTS: dict[str, Any] = {
    'mm_vision_tower': 'openai/clip-vit-large-patch14',
    'mm_hidden_size': 1024,
    'mm_vision_select_layer': -2,
    'mm_vision_select_feature': 'patch',
    'mm_projector_type': 'mlp2x_gelu',
    'mm_use_im_start_end': False,
    'mm_use_im_patch_token': False,
    'use_mm_proj': True,
    'image_aspect_ratio': 'pad',
    'compress_type': 'mean',
    'compress_size': 8,
    'compress_long_memory_size': 4,
    'compress_Turing_memory_size': 1,
    'compress_Turing_update_ratio': 0.2,
    'video_max_frames': 26,
    'video_current_memory_length': 1,
    'video_long_memory_length': 25,
    'video_Turing_memory_length': 25,
    'video_short_memory_length': 10,
    'video_sample_type': 'weighted_kmeans',
    'video_fps': 1,
}
TURING_HIDDEN_DEFAULT = 32  # compress_Turing_hidden_dim when the config omits it
# checkpoint key -> memory config override
MEMORY_KEYS: dict[str, tuple[str, type]] = {
    'video_current_memory_length': ('memory.star.spatial_frames', int),
    'compress_size': ('memory.star.spatial_size', int),
    'video_long_memory_length': ('memory.star.temporal_clusters', int),
    'compress_long_memory_size': ('memory.star.temporal_size', int),
    'video_Turing_memory_length': ('memory.star.abstract_slots', int),
    'compress_Turing_memory_size': ('memory.star.abstract_size', int),
    'compress_Turing_update_ratio': ('memory.star.abstract_alpha', float),
}
VISION_PREFIX = 'model.vision_tower.vision_tower.'
_IGNORED = re.compile(r'.*(rotary_emb\.inv_freq|position_ids)$')  # buffers of old versions


@dataclass(frozen=True)
class V1Spec:
    """The parsed config.json of a v1 checkpoint."""

    raw: dict[str, Any]
    mm_hidden_size: int
    hidden_size: int
    select_layer: int
    select_feature: str
    projector_depth: int
    turing_hidden: int
    vision_tower: str

    @classmethod
    def parse(cls, raw: dict[str, Any], where: str) -> V1Spec:
        if raw.get('model_type') != MODEL_TYPE:
            raise CheckpointError(
                f'{where}: model_type is {raw.get("model_type")!r}, expected '
                f'{MODEL_TYPE!r} (a Flash-VStream v1 checkpoint)'
            )
        missing = [
            k
            for k in ('hidden_size', 'num_hidden_layers', 'vocab_size', 'mm_hidden_size')
            if not isinstance(raw.get(k), int)
        ]
        if missing:
            raise CheckpointError(f'{where}: config.json lacks integer key(s) {missing}')
        check_supported(raw, where)
        return cls(
            raw=raw,
            mm_hidden_size=raw['mm_hidden_size'],
            hidden_size=raw['hidden_size'],
            select_layer=int(raw.get('mm_vision_select_layer', -2)),
            select_feature=str(raw.get('mm_vision_select_feature', 'patch')),
            projector_depth=_projector_depth(str(raw.get('mm_projector_type', 'linear')), where),
            turing_hidden=int(raw.get('compress_Turing_hidden_dim', TURING_HIDDEN_DEFAULT)),
            vision_tower=str(raw.get('mm_vision_tower', '')),
        )

    def llama_kwargs(self) -> dict[str, Any]:
        """The plain Llama part of config.json."""
        skip = ('mm_', 'compress_', 'video_', 'tune_', 'freeze_', 'tokenizer_', 'use_mm')
        out = {
            k: v
            for k, v in self.raw.items()
            if not k.startswith(skip)
            and k not in ('model_type', 'architectures', 'image_aspect_ratio', '_name_or_path')
        }
        if 'torch_dtype' in out:
            out['dtype'] = out.pop('torch_dtype')
        return out

    def memory_overrides(self) -> dict[str, Any]:
        out = {
            name: kind(self.raw[key])
            for key, (name, kind) in MEMORY_KEYS.items()
            if key in self.raw
        }
        if 'compress_size' in self.raw:  # key frames are stored at the spatial size
            out['memory.star.retrieved_size'] = int(self.raw['compress_size'])
        return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# config.json keys that change what the research code computes: key -> (value when absent, as
# the research code reads it; whether a value is one we implement; what we implement).
# Not here: mm_projector_type (parsed by _projector_depth), mm_use_im_patch_token (only adds a
# training-time token), image_aspect_ratio (still images only; video frames are not padded).
BEHAVIOUR_KEYS: dict[str, tuple[Any, Callable[[Any], bool], str]] = {
    'mm_vision_select_feature': ('patch', lambda v: v == 'patch', "'patch' (CLS dropped)"),
    'mm_vision_select_layer': (-2, _is_int, 'an integer hidden-state index'),
    'mm_use_4_vision_tokens': (False, lambda v: v is False, 'false'),
    'mm_use_im_start_end': (False, lambda v: v is False, 'false (no <im_start>/<im_end>)'),
    'compress_type': (
        None,
        lambda v: isinstance(v, str) and 'mean' in v,
        "'mean' (average pooling; the research code pools for any value containing 'mean', "
        'and not at all when absent)',
    ),
    'video_sample_type': (None, lambda v: v == 'weighted_kmeans', "'weighted_kmeans'"),
    'compress_Turing_hidden_dim': (TURING_HIDDEN_DEFAULT, _is_int, 'an integer'),
    **dict.fromkeys(MEMORY_KEYS, (1, _is_number, 'a number')),
}


def check_supported(raw: dict[str, Any], where: str) -> None:
    """CheckpointError naming key, value and what is supported for a behaviour we lack.

    Assuming a value we do not implement would run a different model than the one trained,
    silently; refusing says which key to look at.
    """
    for key, (absent, ok, supported) in BEHAVIOUR_KEYS.items():
        value = raw.get(key, absent)
        if not ok(value):
            shown = 'absent' if key not in raw else repr(value)
            raise CheckpointError(
                f'{where}: config.json {key}={shown} is not supported; supported: {supported}'
            )


def _projector_depth(kind: str, where: str) -> int:
    if kind == 'linear':
        return 1
    match = re.fullmatch(r'mlp(\d+)x_gelu', kind)
    if not match:
        raise CheckpointError(
            f'{where}: config.json mm_projector_type={kind!r} is not supported; '
            "supported: 'linear' or 'mlpNx_gelu' (e.g. 'mlp2x_gelu')"
        )
    return int(match.group(1))


class TuringAttention(nn.Module):
    """The abstract memory's attention module; names match ``model.attention_model.*``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, hidden)
        self.k_proj = nn.Linear(dim, hidden)
        self.v_proj = nn.Linear(dim, hidden)
        self.out_proj = nn.Linear(hidden, dim)
        self.out_ln = nn.LayerNorm(dim, eps=1e-12)


class V1Modules(nn.Module):
    """Every part of a v1 model; state-dict names are the checkpoint's after :func:`rename`."""

    lm: Any  # LlamaForCausalLM, or None when a GGUF file holds the language model
    vision: Any  # CLIPVisionModel or None

    def __init__(
        self,
        lm: nn.Module | None,
        projector: nn.Sequential,
        attention: TuringAttention,
        vision: nn.Module | None,
    ) -> None:
        super().__init__()
        self.lm = lm
        self.projector = projector
        self.attention = attention
        self.vision = vision


def make_rename(modules: V1Modules) -> Callable[[str], str | None]:
    """Checkpoint name -> ``modules`` state-dict name (None: a buffer we recompute).

    The tower's ``vision_model.`` level exists in transformers 4.x's CLIPVisionModel and not in
    5.x; checkpoints always have it.
    """
    inner = 'vision.vision_model.' if hasattr(modules.vision, 'vision_model') else 'vision.'
    pairs = (
        ('model.mm_projector.', 'projector.'),
        ('model.attention_model.', 'attention.'),
        (VISION_PREFIX + 'vision_model.', inner),
        ('model.', 'lm.model.'),
        ('lm_head.', 'lm.lm_head.'),
    )

    def rename(name: str) -> str | None:
        if _IGNORED.match(name):
            return None
        for old, new in pairs:
            if name.startswith(old):
                return new + name[len(old) :]
        return name

    return rename


def to_checkpoint_name(name: str) -> str:
    """``V1Modules`` state-dict name -> checkpoint name (the inverse of :func:`make_rename`)."""
    if name.startswith('vision.'):
        rest = name[len('vision.') :]
        return VISION_PREFIX + 'vision_model.' + rest.removeprefix('vision_model.')
    for new, old in (
        ('projector.', 'model.mm_projector.'),
        ('attention.', 'model.attention_model.'),
        ('lm.model.', 'model.'),
        ('lm.lm_head.', 'lm_head.'),
    ):
        if name.startswith(new):
            return old + name[len(new) :]
    raise ValueError(f'no checkpoint name for {name!r}')


def make_projector(depth: int, dim_in: int, dim_out: int) -> nn.Sequential:
    """linear (depth 1) or mlpNx_gelu: Linear, then (GELU, Linear) * (depth - 1)."""
    layers: list[nn.Module] = [nn.Linear(dim_in, dim_out)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(dim_out, dim_out)]
    return nn.Sequential(*layers)


def _no_init_weights() -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """transformers' context that skips weight init: in ``transformers.initialization`` since 5.0,
    in ``transformers.modeling_utils`` before (4.x, the Jetson line); found, not version-tested."""
    for where in ('transformers.initialization', 'transformers.modeling_utils'):
        try:
            module = importlib.import_module(where)
        except ImportError:
            continue
        if hasattr(module, 'no_init_weights'):
            return module.no_init_weights
    raise CheckpointError('this transformers has no no_init_weights (need transformers>=4.56)')


@contextlib.contextmanager
def build_context(device: torch.device, dtype: torch.dtype, init: bool) -> Iterator[None]:
    """Build modules directly on ``device`` in ``dtype``; skip the random init when loading."""
    no_init_weights = _no_init_weights()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), contextlib.nullcontext() if init else no_init_weights():
            yield
    finally:
        torch.set_default_dtype(previous)


def build_modules(
    spec: V1Spec, vision_config: Any | None, device: torch.device, dtype: torch.dtype, init: bool
) -> V1Modules:
    """The v1 model from its config (random init when ``init``, else uninitialised)."""
    from transformers import CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    try:
        llama_config = LlamaConfig(**spec.llama_kwargs())
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f'config.json is not a valid Llama config: {exc}') from exc
    with build_context(device, dtype, init):
        lm = LlamaForCausalLM(llama_config)
        projector = make_projector(spec.projector_depth, spec.mm_hidden_size, spec.hidden_size)
        attention = TuringAttention(spec.mm_hidden_size, spec.turing_hidden)
        vision = CLIPVisionModel(vision_config) if vision_config is not None else None
    return V1Modules(
        lm.eval(),
        projector.eval(),
        attention.eval(),
        vision.eval() if vision is not None else None,
    )


def build_parts(
    spec: V1Spec, vision_config: Any, device: torch.device, dtype: torch.dtype
) -> V1Modules:
    """Every part but the language model (uninitialised): what a GGUF sidecar holds."""
    from transformers import CLIPVisionModel

    with build_context(device, dtype, init=False):
        projector = make_projector(spec.projector_depth, spec.mm_hidden_size, spec.hidden_size)
        attention = TuringAttention(spec.mm_hidden_size, spec.turing_hidden)
        vision = CLIPVisionModel(vision_config)
    return V1Modules(None, projector.eval(), attention.eval(), vision.eval())


def infer_vision_config(shapes: dict[str, tuple[int, ...]]) -> Any:
    """A CLIPVisionConfig from the shapes of embedded tower weights (heads = hidden / 64)."""
    from transformers import CLIPVisionConfig

    p = VISION_PREFIX + 'vision_model.'
    try:
        hidden, _, patch, _ = shapes[p + 'embeddings.patch_embedding.weight']
        positions = shapes[p + 'embeddings.position_embedding.weight'][0]
        inter = shapes[p + 'encoder.layers.0.mlp.fc1.weight'][0]
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f'embedded vision tower is incomplete: {exc}') from exc
    layers = len(
        {k[len(p) :].split('.')[2] for k in shapes if k.startswith(p + 'encoder.layers.')}
    )
    grid = math.isqrt(positions - 1)
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        patch_size=patch,
        image_size=grid * patch,
    )
