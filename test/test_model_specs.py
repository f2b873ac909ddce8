"""Model sizes from config.json: every profile's estimate equals the one its config gives.

The configs below carry the real hub sizes of each checkpoint (the layouts of the tiny
builders in models/tiny.py): they are written into a fake hub cache, so the test proves both
that the budget reads a cached config.json and that the fallback table holds the same shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flash_vstream_ros.config import AppConfig, budget, load_yaml, profiles, with_overrides
from flash_vstream_ros.config.budget import MIB, estimate
from flash_vstream_ros.errors import ConfigError

pytestmark = pytest.mark.unit

SIGLIP_SO400M_384 = {
    'model_type': 'siglip_vision_model',
    'hidden_size': 1152,
    'intermediate_size': 4304,
    'num_hidden_layers': 26,
    'num_attention_heads': 16,
    'image_size': 384,
    'patch_size': 14,
}
CONFIGS: dict[str, dict[str, Any]] = {
    'IVGSZ/Flash-VStream-7b': {  # Vicuna-7B (Llama-2-7B shape) + CLIP-L/14 at 224
        'model_type': 'vstream',
        'hidden_size': 4096,
        'intermediate_size': 11008,
        'num_hidden_layers': 32,
        'num_attention_heads': 32,
        'num_key_value_heads': 32,
        'vocab_size': 32000,
        'max_position_embeddings': 4096,
        'tie_word_embeddings': False,
        'torch_dtype': 'float16',
        'mm_hidden_size': 1024,
        'mm_vision_tower': 'openai/clip-vit-large-patch14',
        'mm_projector_type': 'mlp2x_gelu',
    },
    'llava-hf/llava-onevision-qwen2-0.5b-ov-hf': {  # Qwen2-0.5B + SigLIP so400m 384
        'model_type': 'llava_onevision',
        'vision_feature_layer': -1,
        'text_config': {
            'model_type': 'qwen2',
            'hidden_size': 896,
            'intermediate_size': 4864,
            'num_hidden_layers': 24,
            'num_attention_heads': 14,
            'num_key_value_heads': 2,
            'vocab_size': 152000,
            'max_position_embeddings': 32768,
            'tie_word_embeddings': True,
        },
        'vision_config': SIGLIP_SO400M_384,
    },
    'llava-hf/llava-interleave-qwen-0.5b-hf': {  # Qwen1.5-0.5B (no GQA) + SigLIP
        'model_type': 'llava',
        'vision_feature_layer': -1,
        'text_config': {
            'model_type': 'qwen2',
            'hidden_size': 1024,
            'intermediate_size': 2816,
            'num_hidden_layers': 24,
            'num_attention_heads': 16,
            'num_key_value_heads': 16,
            'vocab_size': 152000,
            'max_position_embeddings': 32768,
            'tie_word_embeddings': True,
        },
        'vision_config': SIGLIP_SO400M_384,
    },
    'llava-hf/llava-1.5-7b-hf': {  # as on the hub: the text config names only what differs
        'model_type': 'llava',
        'vision_feature_layer': -2,
        'text_config': {
            'model_type': 'llama',
            'max_position_embeddings': 4096,
            'vocab_size': 32064,
        },
        'vision_config': {
            'model_type': 'clip_vision_model',
            'hidden_size': 1024,
            'intermediate_size': 4096,
            'num_hidden_layers': 24,
            'num_attention_heads': 16,
            'image_size': 336,
            'patch_size': 14,
        },
    },
}
QWEN2_VL_VISION = {  # Qwen2-VL's ViT; its hidden_size is the LM's
    'depth': 32,
    'embed_dim': 1280,
    'mlp_ratio': 4,
    'num_heads': 16,
    'in_chans': 3,
    'patch_size': 14,
    'spatial_merge_size': 2,
    'spatial_patch_size': 14,
    'temporal_patch_size': 2,
}
QWEN2_7B_FLAT = {  # the flat transformers-4 layout of the Qwen2-VL hub configs
    'hidden_size': 3584,
    'intermediate_size': 18944,
    'num_hidden_layers': 28,
    'num_attention_heads': 28,
    'num_key_value_heads': 4,
    'vocab_size': 152064,
    'max_position_embeddings': 32768,
    'tie_word_embeddings': False,
    'torch_dtype': 'bfloat16',
    'rope_scaling': {'type': 'mrope', 'mrope_section': [16, 24, 24]},
}
CONFIGS.update(
    {
        'zhang9302002/Flash-VStream-Qwen-7b': {
            'model_type': 'flash_vstream_qwen2_vl',
            **QWEN2_7B_FLAT,
            'vision_config': {
                **QWEN2_VL_VISION,
                'hidden_size': 3584,
                'flash_memory_config': {
                    'flash_memory_temporal_length': 120,
                    'flash_memory_spatial_length': 60,
                },
            },
        },
        'Qwen/Qwen2-VL-2B-Instruct': {
            'model_type': 'qwen2_vl',
            **QWEN2_7B_FLAT,
            'hidden_size': 1536,
            'intermediate_size': 8960,
            'num_attention_heads': 12,
            'num_key_value_heads': 2,
            'vocab_size': 151936,
            'tie_word_embeddings': True,
            'vision_config': {**QWEN2_VL_VISION, 'hidden_size': 1536},
        },
        'Qwen/Qwen2.5-VL-3B-Instruct': {
            'model_type': 'qwen2_5_vl',
            **QWEN2_7B_FLAT,
            'hidden_size': 2048,
            'intermediate_size': 11008,
            'num_hidden_layers': 36,
            'num_attention_heads': 16,
            'num_key_value_heads': 2,
            'vocab_size': 151936,
            'max_position_embeddings': 128000,
            'tie_word_embeddings': True,
            'vision_config': {
                'depth': 32,
                'hidden_size': 1280,
                'intermediate_size': 3420,
                'num_heads': 16,
                'out_hidden_size': 2048,
                'patch_size': 14,
                'spatial_merge_size': 2,
                'temporal_patch_size': 2,
                'window_size': 112,
                'fullatt_block_indexes': [7, 15, 23, 31],
                'tokens_per_second': 2,
            },
        },
    }
)
GPU_PROFILES = [p for p in profiles.profile_paths() if 'tiny' not in p.read_text()]


def write_cached(cache: Path, repo_id: str, cfg: dict[str, Any], rev: str = 'abc123') -> Path:
    """A hub-cache snapshot of ``repo_id`` holding only its config.json, refs/main on it."""
    repo = cache / ('models--' + repo_id.replace('/', '--'))
    snapshot = repo / 'snapshots' / rev
    snapshot.mkdir(parents=True)
    (snapshot / 'config.json').write_text(json.dumps(cfg))
    (repo / 'refs').mkdir(exist_ok=True)
    (repo / 'refs' / 'main').write_text(rev)
    return snapshot


def kv_bytes_per_token(cfg: dict[str, Any]) -> int:
    """From the raw config: layers x (keys + values) x KV heads x head dim x fp16 bytes."""
    text = cfg.get('text_config', cfg)
    layers = text.get('num_hidden_layers', 32)
    heads = text.get('num_attention_heads', 32)
    head_dim = text.get('hidden_size', 4096) // heads
    return layers * 2 * text.get('num_key_value_heads', heads) * head_dim * 2


def on(repo_id: str) -> AppConfig:
    family = 'flash_vstream' if 'VStream-7b' in repo_id else 'llava'
    family = 'qwen2_vl' if 'qwen2' in str(CONFIGS.get(repo_id, {}).get('model_type')) else family
    return with_overrides(AppConfig(), {'model.family': family, 'model.path': repo_id})


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache that the budget looks into."""
    root = tmp_path / 'hub'
    root.mkdir()
    monkeypatch.setenv('HF_HUB_CACHE', str(root))
    return root


def test_every_gpu_profile_has_a_config_here() -> None:
    assert GPU_PROFILES
    for path in GPU_PROFILES:
        assert load_yaml(path, AppConfig).model.path in CONFIGS


@pytest.mark.parametrize('path', GPU_PROFILES, ids=lambda p: p.stem)
def test_profile_estimate_equals_the_one_from_its_config(cache: Path, path: Path) -> None:
    cfg = load_yaml(path, AppConfig)
    from_table = estimate(cfg, device='cuda')
    write_cached(cache, cfg.model.path, CONFIGS[cfg.model.path])
    assert estimate(cfg, device='cuda') == from_table


@pytest.mark.parametrize('repo_id', sorted(CONFIGS))
def test_kv_cache_and_weights_follow_the_config(cache: Path, repo_id: str) -> None:
    est = estimate(on(repo_id), device='cuda')  # the table (nothing cached)
    assert est.kv_cache == kv_bytes_per_token(CONFIGS[repo_id]) * est.context_tokens
    write_cached(cache, repo_id, CONFIGS[repo_id])
    assert estimate(on(repo_id), device='cuda') == est


def test_interleave_has_eight_times_the_kv_cache_per_token_of_onevision() -> None:
    interleave = estimate(on('llava-hf/llava-interleave-qwen-0.5b-hf'), device='cuda')
    onevision = estimate(on('llava-hf/llava-onevision-qwen2-0.5b-ov-hf'), device='cuda')
    assert interleave.context_tokens == onevision.context_tokens
    assert interleave.kv_cache == 8 * onevision.kv_cache


def test_a_hub_id_not_in_the_table_is_read_from_the_cache(cache: Path) -> None:
    cfg = on('someone/my-llava-finetune')
    with pytest.raises(ConfigError, match='my-llava-finetune'):
        estimate(cfg, device='cuda')
    write_cached(cache, 'someone/my-llava-finetune', CONFIGS['llava-hf/llava-1.5-7b-hf'])
    est = estimate(cfg, device='cuda')
    assert est.model == 'my-llava-finetune'
    assert 13.0 < est.weights / 2**30 < 13.3  # 7.06B parameters in fp16, like llava-1.5-7b


def test_refs_main_names_the_snapshot_read(cache: Path) -> None:
    repo_id = 'someone/two-revisions'
    write_cached(cache, repo_id, CONFIGS['llava-hf/llava-interleave-qwen-0.5b-hf'], rev='new')
    write_cached(cache, repo_id, CONFIGS['llava-hf/llava-1.5-7b-hf'], rev='old')  # refs -> old
    assert budget.find_spec('llava', repo_id).lm.vocab == 32064


def test_the_cache_follows_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('HF_HUB_CACHE', raising=False)
    monkeypatch.delenv('HUGGINGFACE_HUB_CACHE', raising=False)
    monkeypatch.setenv('HF_HOME', str(tmp_path))
    write_cached(tmp_path / 'hub', 'someone/at-home', CONFIGS['llava-hf/llava-1.5-7b-hf'])
    assert budget.find_spec('llava', 'someone/at-home').encoder.image_size == 336


def test_a_local_folder_with_weights_counts_their_bytes(tmp_path: Path) -> None:
    folder = tmp_path / 'my-model'
    folder.mkdir()
    (folder / 'config.json').write_text(json.dumps(CONFIGS['llava-hf/llava-1.5-7b-hf']))
    (folder / 'model.safetensors').write_bytes(b'\0' * (2 * MIB))
    spec = budget.find_spec('llava', str(folder))
    assert spec.parameters == MIB  # 2 MiB of fp16 weights
    assert spec.lm.hidden == 4096  # the Llama default the hub config leaves out
