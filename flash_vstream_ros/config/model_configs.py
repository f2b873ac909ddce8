"""Model sizes read from a model's own config.json (offline: a local folder or the hub cache).

The budget must know a model's shapes before loading it. The truth is the checkpoint's
config.json: read it from a local checkpoint folder, or from the Hugging Face hub cache when
``model.path`` is a hub id that was downloaded before (``HF_HUB_CACHE``, else ``HF_HOME/hub``,
else ``~/.cache/huggingface/hub``: ``models--org--name/snapshots/<rev>/config.json``). Nothing
is downloaded. The table of :mod:`.model_specs` is only the fallback for ids not on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flash_vstream_ros.config.model_specs import (
    CLIP_L14_224,
    CLIP_L14_336,
    DEMO,
    KNOWN_MODELS,
    TINY,
    V1_TURING_HIDDEN,
    EncoderShape,
    LanguageModelShape,
    ModelSpec,
    count_parameters,
    qwen_vl_spec,
    table_spec,
    turing_parameters,
)
from flash_vstream_ros.errors import ConfigError

# transformers' class defaults for keys a hub config.json may leave out (llava-1.5-7b-hf's
# text_config names only what differs from LlamaConfig), by model_type.
TEXT_DEFAULTS: dict[str, dict[str, Any]] = {
    'llama': {
        'hidden_size': 4096,
        'intermediate_size': 11008,
        'num_hidden_layers': 32,
        'num_attention_heads': 32,
        'vocab_size': 32000,
        'max_position_embeddings': 2048,
        'tie_word_embeddings': False,
    },
    'qwen2': {
        'hidden_size': 4096,
        'intermediate_size': 22016,
        'num_hidden_layers': 32,
        'num_attention_heads': 32,
        'vocab_size': 151936,
        'max_position_embeddings': 32768,
        'tie_word_embeddings': False,
    },
}
VISION_DEFAULTS: dict[str, dict[str, Any]] = {
    'clip_vision_model': {
        'hidden_size': 768,
        'intermediate_size': 3072,
        'num_hidden_layers': 12,
        'num_attention_heads': 12,
        'image_size': 224,
        'patch_size': 32,
    },
    'siglip_vision_model': {
        'hidden_size': 768,
        'intermediate_size': 3072,
        'num_hidden_layers': 12,
        'num_attention_heads': 12,
        'image_size': 224,
        'patch_size': 16,
    },
}
# decoders whose q/k/v projections have biases
QKV_BIAS_TYPES = ('qwen2', 'qwen2_vl', 'qwen2_vl_text', 'qwen2_5_vl', 'qwen2_5_vl_text')
QWEN_VL_TYPES = ('qwen2_vl', 'qwen2_5_vl', 'flash_vstream_qwen2_vl')  # the qwen2_vl family
QWEN_STREAM_SIDE = 448  # frames of the qwen2_vl family (models/qwen_vision.py)


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """A key of a config.json dict or an attribute of a transformers config object."""
    value = cfg.get(key, default) if isinstance(cfg, dict) else getattr(cfg, key, default)
    return default if value is None else value


def _with_defaults(cfg: Any, defaults: dict[str, dict[str, Any]]) -> Any:
    """A config dict completed with its model_type's class defaults (objects are complete)."""
    if not isinstance(cfg, dict):
        return cfg
    return {**defaults.get(str(cfg.get('model_type', '')), {}), **cfg}


def lm_shape(cfg: Any) -> LanguageModelShape:
    """The shape of a decoder from its transformers text config (object or dict)."""
    cfg = _with_defaults(cfg, TEXT_DEFAULTS)
    heads = int(_get(cfg, 'num_attention_heads'))
    hidden = int(_get(cfg, 'hidden_size'))
    return LanguageModelShape(
        layers=int(_get(cfg, 'num_hidden_layers')),
        hidden=hidden,
        heads=heads,
        kv_heads=int(_get(cfg, 'num_key_value_heads', heads)),
        head_dim=int(_get(cfg, 'head_dim', hidden // heads)),
        intermediate=int(_get(cfg, 'intermediate_size')),
        vocab=int(_get(cfg, 'vocab_size')),
        max_context=int(_get(cfg, 'max_position_embeddings', 4096)),
        tied_embeddings=bool(_get(cfg, 'tie_word_embeddings', False)),
        qkv_bias=str(_get(cfg, 'model_type', '')) in QKV_BIAS_TYPES,
    )


def qwen_vision_shape(cfg: Any) -> tuple[EncoderShape, bool]:
    """(shape, gated) of a Qwen2-VL / Qwen2.5-VL vision config (object or dict): Qwen2-VL
    names the ViT width ``embed_dim`` (its ``hidden_size`` is the LM's), Qwen2.5-VL
    ``hidden_size`` with ``out_hidden_size`` for the LM."""
    gated = _get(cfg, 'out_hidden_size') is not None
    width = int(_get(cfg, 'hidden_size' if gated else 'embed_dim', 1280))
    mlp = _get(cfg, 'intermediate_size') if gated else width * float(_get(cfg, 'mlp_ratio', 4))
    merge = int(_get(cfg, 'spatial_merge_size', 2))
    shape = EncoderShape(
        image_size=QWEN_STREAM_SIDE,
        patch=int(_get(cfg, 'patch_size', 14)),
        hidden=width,
        intermediate=int(mlp),
        heads=int(_get(cfg, 'num_heads', 16)),
        layers=int(_get(cfg, 'depth', 32)),
        feature_dim=merge * merge * width,
    )
    return shape, gated


def encoder_shape(cfg: Any, feature_dim: int) -> EncoderShape:
    """The shape of a ViT from its transformers vision config (object or dict)."""
    if _get(cfg, 'depth') is not None:  # a Qwen2-VL-family tower
        return qwen_vision_shape(cfg)[0]
    cfg = _with_defaults(cfg, VISION_DEFAULTS)
    return EncoderShape(
        image_size=int(_get(cfg, 'image_size', 224)),
        patch=int(_get(cfg, 'patch_size', 14)),
        hidden=int(_get(cfg, 'hidden_size')),
        intermediate=int(_get(cfg, 'intermediate_size')),
        heads=int(_get(cfg, 'num_attention_heads')),
        layers=int(_get(cfg, 'num_hidden_layers')),
        feature_dim=feature_dim,
    )


def display_name(path: str) -> str:
    """The table's name for a known model (so a config on disk and the table name it alike),
    else the last part of the hub id or folder."""
    known = table_spec(path)
    return known.name if known is not None else Path(path.rstrip('/')).name


def spec_from_config(cfg: dict[str, Any], name: str) -> ModelSpec:
    """A spec from a parsed config.json: LLaVA-style (``text_config``/``vision_config``) or
    a Flash-VStream v1 Llama config with ``mm_*`` keys (its tower named by mm_vision_tower);
    a Qwen2-VL-family config (flat, as the hub has them, or with ``text_config``)."""
    if cfg.get('model_type') in QWEN_VL_TYPES:
        text = {**cfg, **(cfg.get('text_config') or {}), 'model_type': 'qwen2'}
        lm = lm_shape(text)
        encoder, gated = qwen_vision_shape(cfg.get('vision_config') or {})
        return qwen_vl_spec(name, lm, encoder, gated)
    if 'vision_config' in cfg:
        text = dict(cfg.get('text_config') or {'model_type': 'llama'})
        if 'tie_word_embeddings' not in text and 'tie_word_embeddings' in cfg:
            text['tie_word_embeddings'] = cfg['tie_word_embeddings']  # older LLaVA configs
        lm = lm_shape(text)
        vision = _with_defaults(cfg['vision_config'], VISION_DEFAULTS)
        layers = cfg.get('vision_feature_layer', -2)
        width = int(vision['hidden_size']) * (len(layers) if isinstance(layers, list) else 1)
        encoder = encoder_shape(vision, width)
        return ModelSpec(name, count_parameters(lm, encoder), lm, encoder)
    lm = lm_shape({'model_type': 'llama', **cfg})
    encoder = CLIP_L14_336 if '336' in str(cfg.get('mm_vision_tower', '')) else CLIP_L14_224
    turing = int(cfg.get('compress_Turing_hidden_dim', V1_TURING_HIDDEN))
    extra = turing_parameters(encoder.feature_dim, turing)
    return ModelSpec(name, count_parameters(lm, encoder, extra=extra), lm, encoder)


CHECKPOINT_DTYPE_BYTES = {'float32': 4, 'float16': 2, 'bfloat16': 2}


def spec_from_folder(folder: Path, name: str = '', weights: bool = True) -> ModelSpec | None:
    """A spec read from a checkpoint folder's config.json, None without one.

    With ``weights`` and weight files present, the parameter count is their bytes over the
    checkpoint dtype's size (what will be loaded); else it is computed from the shapes.
    """
    path = folder / 'config.json'
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
        spec = spec_from_config(cfg, name or folder.name)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f'cannot read the model shapes from {path}: {exc}') from exc
    files = [f for ext in ('*.safetensors', '*.bin') for f in folder.glob(ext)] if weights else []
    if not files:
        return spec
    text = cfg.get('text_config') or cfg
    dtype = str(cfg.get('torch_dtype') or cfg.get('dtype') or text.get('torch_dtype') or '')
    params = sum(f.stat().st_size for f in files) // CHECKPOINT_DTYPE_BYTES.get(dtype, 2)
    return ModelSpec(spec.name, params, spec.lm, spec.encoder)


# --------------------------------------------------------------------------- hub cache


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads (its own environment variables, same order)."""
    for var in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE'):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get('HF_HOME'):
        return Path(os.environ['HF_HOME']).expanduser() / 'hub'
    xdg = os.environ.get('XDG_CACHE_HOME') or '~/.cache'
    return Path(xdg).expanduser() / 'huggingface' / 'hub'


def hub_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of hub model ``org/name`` that has a config.json: the one
    refs/main names, else the newest; None when the id was never downloaded."""
    if repo_id.count('/') != 1 or repo_id.startswith(('/', '.', '~')):
        return None
    repo = hub_cache_dir() / ('models--' + repo_id.replace('/', '--'))
    ref = repo / 'refs' / 'main'
    if ref.is_file():
        named = repo / 'snapshots' / ref.read_text().strip()
        if (named / 'config.json').is_file():
            return named
    found = [p.parent for p in repo.glob('snapshots/*/config.json')]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def find_spec(family: str, path: str) -> ModelSpec:
    """The spec of ``family``/``path``: tiny; a local checkpoint folder's config.json; a cached
    hub snapshot's config.json (shapes only: a partial download must not shrink the weights);
    else the table. Raises ConfigError naming the known ids."""
    if family == 'tiny':
        return TINY
    if family == 'demo':
        return DEMO
    folder = Path(path).expanduser()
    if path and folder.is_dir():
        local = spec_from_folder(folder, display_name(path))
        if local is not None:
            return local
    snapshot = hub_snapshot(path) if path else None
    if snapshot is not None:
        cached = spec_from_folder(snapshot, display_name(path), weights=False)
        if cached is not None:
            return cached
    known = table_spec(path)
    if known is not None:
        return known
    fragments = [fragment for fragment, _ in KNOWN_MODELS]
    raise ConfigError(
        f'no size known for model.path {path!r} (family {family!r}): its GPU memory cannot be '
        f'estimated before loading (no config.json in that folder or in the hub cache '
        f'{hub_cache_dir()}); known names contain one of {fragments}'
    )
