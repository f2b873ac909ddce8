"""The budget on the real tiny models and real memories (model tier: builds tiny checkpoints)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from flash_vstream_ros.config import AppConfig, MemoryConfig, SynopsisConfig, with_overrides
from flash_vstream_ros.config.budget import (
    MIB,
    ModelInfo,
    check,
    enforce_budget,
    estimate,
    memory_state_bytes,
)
from flash_vstream_ros.errors import GpuBudgetError
from flash_vstream_ros.memory import build_memory
from flash_vstream_ros.models import load_model
from flash_vstream_ros.stamps import to_ns

pytestmark = pytest.mark.model


@pytest.fixture(scope='module', params=['flash_vstream', 'llava'])
def tiny(request: pytest.FixtureRequest, tiny_cache_dir: Path) -> Iterator[tuple[AppConfig, Any]]:
    cfg = with_overrides(
        AppConfig(),
        {
            'model.cache_dir': str(tiny_cache_dir),
            'model.tiny_family': request.param,
            'model.device': 'cpu',
        },
    )
    model = load_model(cfg.model)
    yield cfg, model
    model.close()


def test_loaded_tiny_model_gives_measured_weights_and_its_own_shapes(
    tiny: tuple[AppConfig, Any],
) -> None:
    cfg, model = tiny
    info = ModelInfo.from_model(model, cfg)
    assert info.measured
    assert info.parameter_bytes == model.parameter_bytes()
    assert (info.lm.layers, info.lm.hidden, info.lm.max_context) == (2, 64, 16384)
    assert (info.encoder.tokens, info.feature_dim) == (257, 64)


def test_check_refuses_and_accepts_the_tiny_model_under_fake_device_limits(
    tiny: tuple[AppConfig, Any],
) -> None:
    cfg, model = tiny
    est = estimate(cfg, ModelInfo.from_model(model, cfg), device='cuda')
    with pytest.raises(GpuBudgetError, match='device memory 64 MiB'):
        check(cfg, est, device_total_bytes=64 * MIB)
    check(cfg, est, device_total_bytes=est.total)


def test_enforce_budget_on_a_cpu_model_checks_nothing_on_the_gpu(
    tiny: tuple[AppConfig, Any],
) -> None:
    cfg, model = tiny
    limited = with_overrides(cfg, {'gpu.max_gpu_memory_mb': 1})
    est = enforce_budget(limited, model)
    assert est is not None
    assert est.device == 'cpu'
    assert enforce_budget(limited) is not None  # before loading: the tiny spec


@pytest.mark.parametrize(
    'memory',
    [
        MemoryConfig(),
        MemoryConfig(
            kind='synopsis',
            synopsis=SynopsisConfig(clusters=15, detail_frames=3, buffer_frames=40),
        ),
    ],
    ids=['star', 'synopsis'],
)
def test_memory_state_equals_a_full_real_memory(memory: MemoryConfig) -> None:
    torch.manual_seed(0)
    mem = build_memory(memory, 32, dtype=torch.float32)
    frames = memory.star.buffer_frames + 5 if memory.kind == 'star' else 70  # timeline: 64
    for i in range(frames):
        mem.update(torch.randn(16, 16, 32), i * 100_000_000, 'cam')  # (H, W, D), 10 Hz
    assert mem.snapshot().nbytes == memory_state_bytes(memory, 32, 4)


@pytest.mark.parametrize('name', ['orin_nano', 'orin_nx', 'agx_orin', 'desktop_gpu', 'cpu'])
def test_profile_memory_and_engine_settings_run_with_a_tiny_model(
    name: str, tiny_cache_dir: Path
) -> None:
    """Each profile with its model swapped for the tiny one of the same format, on the CPU."""
    from flash_vstream_ros.config import load_yaml
    from flash_vstream_ros.config.profiles import PROFILES_DIR
    from flash_vstream_ros.engine import Engine
    from flash_vstream_ros.engine.status import Question

    cfg = load_yaml(PROFILES_DIR / f'{name}.yaml', AppConfig)
    tiny_family = 'llava' if cfg.model.family == 'llava' else 'flash_vstream'
    cfg = with_overrides(
        cfg,
        {
            'model.family': 'tiny',
            'model.path': '',
            'model.device': 'cpu',
            'model.dtype': 'float32',
            'model.tiny_family': tiny_family,
            'model.cache_dir': str(tiny_cache_dir),
            'generation.max_new_tokens': 4,
        },
    )
    engine = Engine(cfg)
    engine.start()
    try:
        rng = np.random.default_rng(0)
        for i in range(4):
            frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            assert engine.submit_frame(frame, to_ns(float(i)), 'cam')
            assert engine.wait_idle(60.0)
        answer = engine.ask(Question(text='What is there?'))
        assert answer.answer_tokens <= 4
        assert answer.visual_tokens > 0
        assert answer.status.frames_ingested == 4
    finally:
        engine.stop()
