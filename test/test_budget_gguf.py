"""The GPU estimate of model.decoder=gguf: GGUF weights per quantisation, llama.cpp's KV cache
for the whole n_ctx, and Flash-VStream-7b at Q4_K_M on the Jetsons (NX fits, Nano does not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flash_vstream_ros.config import AppConfig, load_yaml, with_overrides
from flash_vstream_ros.config.budget import MIB, check, estimate
from flash_vstream_ros.config.gguf_budget import GGUF_BITS, gguf_bytes
from flash_vstream_ros.config.model_specs import FLASH_VSTREAM_7B, lm_parameters
from flash_vstream_ros.config.profiles import PROFILES_DIR
from flash_vstream_ros.errors import ConfigError

pytestmark = pytest.mark.unit

NX_GGUF = PROFILES_DIR / 'orin_nx_gguf.yaml'
ORIN_NANO_MIB = 7_620  # shared CPU+GPU memory of the 8 GB board
OS_RESERVE_MIB = 2_048  # what test_profiles leaves to the OS and other nodes


def test_gguf_weights_follow_the_quantisation() -> None:
    lm = FLASH_VSTREAM_7B.lm
    params = lm_parameters(lm)
    assert params == pytest.approx(6.74e9, rel=0.01)
    q4 = gguf_bytes(lm, 'q4_k_m')
    assert q4 == int(params * 4.85 / 8)
    assert gguf_bytes(lm, 'q8_0') == int(params * 8.5 / 8)
    assert gguf_bytes(lm, 'f16') == params * 2
    assert q4 / MIB == pytest.approx(3_897, abs=5)
    assert set(GGUF_BITS) == {'f32', 'f16', 'q8_0', 'q4_k_m'}


def test_an_existing_gguf_counts_its_own_size(tmp_path: Path) -> None:
    path = tmp_path / 'm.gguf'
    path.write_bytes(b'x' * 1234)
    assert gguf_bytes(FLASH_VSTREAM_7B.lm, 'q4_k_m', str(path)) == 1234


def test_seven_b_q4_k_m_fits_orin_nx() -> None:
    cfg = load_yaml(NX_GGUF, AppConfig)
    est = estimate(cfg, device='cuda')
    assert cfg.memory.kind == 'star'
    assert est.visual_tokens == 681
    # torch parts (CLIP ViT-L/14, projector, q/k) fp16 + the Q4_K_M language model
    torch_bytes = (FLASH_VSTREAM_7B.parameters - lm_parameters(FLASH_VSTREAM_7B.lm)) * 2
    assert est.weights == torch_bytes + gguf_bytes(FLASH_VSTREAM_7B.lm, 'q4_k_m')
    # llama.cpp allocates the KV cache (f16) for all of n_ctx: 32 x 2 x 32 x 128 x 2048 x 2
    assert est.kv_cache == 32 * 2 * 32 * 128 * cfg.model.gguf.n_ctx * 2 == 1024 * MIB
    assert est.total <= cfg.gpu.max_gpu_memory_mb * MIB
    assert est.context_tokens <= est.max_context == cfg.model.gguf.n_ctx
    # against torch fp16 (15 GiB and more), the same memory and board
    torch_cfg = with_overrides(cfg, {'model.decoder': 'torch'})
    assert estimate(torch_cfg, device='cuda').total > 2 * est.total


def test_seven_b_q4_k_m_does_not_fit_orin_nano_even_trimmed() -> None:
    """The smallest sensible set-up: n_ctx 1024 (998 tokens needed), one frame per encode,
    questions up to 500 characters. About 6.3 GiB against 5.4 GiB usable: no Nano profile."""
    cfg = with_overrides(
        load_yaml(NX_GGUF, AppConfig),
        {
            'model.gguf.n_ctx': 1024,
            'generation.max_question_chars': 500,
            'engine.max_encode_batch': 1,
        },
    )
    est = estimate(cfg, device='cuda')
    assert est.context_tokens <= 1024
    assert est.total > (ORIN_NANO_MIB - OS_RESERVE_MIB) * MIB, est.describe()


def test_context_beyond_n_ctx_is_refused() -> None:
    cfg = with_overrides(load_yaml(NX_GGUF, AppConfig), {'model.gguf.n_ctx': 512})
    with pytest.raises(ConfigError, match=r'model\.gguf\.n_ctx'):
        check(cfg, estimate(cfg, device='cuda'))
