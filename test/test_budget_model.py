"""The budget on the real tiny models and real memories (model tier: builds tiny checkpoints)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from flash_vstream_ros.budget import (
    MIB,
    ModelInfo,
    check,
    enforce_budget,
    estimate,
    memory_state_bytes,
)
from flash_vstream_ros.config import AppConfig, MemoryConfig, SynopsisConfig, with_overrides
from flash_vstream_ros.errors import GpuBudgetError
from flash_vstream_ros.memory import build_memory
from flash_vstream_ros.models import load_model

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
    assert (info.lm.layers, info.lm.hidden, info.lm.max_context) == (2, 64, 2048)
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
    frames = memory.star.buffer_frames + 5 if memory.kind == 'star' else 45
    for i in range(frames):
        mem.update(torch.randn(16, 16, 32), float(i), 'cam')  # (H, W, D)
    assert mem.snapshot().nbytes == memory_state_bytes(memory, 32, 4)
