"""The GPU memory budget: estimate by part, refusal of what cannot fit, the README table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flash_vstream_ros.config import AppConfig, budget, load_yaml, profiles, with_overrides
from flash_vstream_ros.config.budget import (
    MIB,
    ModelInfo,
    check,
    enforce_budget,
    estimate,
    memory_state_bytes,
)
from flash_vstream_ros.config.budget_parts import kv_cache_bytes, released_lm_bytes
from flash_vstream_ros.config.model_specs import FLASH_VSTREAM_7B, VICUNA_7B
from flash_vstream_ros.errors import ConfigError, GpuBudgetError

pytestmark = pytest.mark.unit

PROFILES = profiles.PROFILES_DIR


def profile(name: str) -> AppConfig:
    return load_yaml(PROFILES / f'{name}.yaml', AppConfig)


@dataclasses.dataclass
class FakeModel:
    """What enforce_budget reads of a loaded VisionLanguageModel."""

    nbytes: int
    device: str = 'cuda:0'
    feature_dim: int = 64

    def parameter_bytes(self) -> int:
        return self.nbytes


def test_weights_of_flash_vstream_7b_in_fp16() -> None:
    est = estimate(profile('agx_orin'), device='cuda')
    assert est.weights == FLASH_VSTREAM_7B.parameters * 2
    assert 13.0 < est.weights / 2**30 < 13.3  # 7.06B parameters x 2 bytes


def test_kv_cache_is_layers_x_2_x_tokens_x_width() -> None:
    cfg = profile('agx_orin')
    est = estimate(cfg, device='cuda')
    prompt = budget.PROMPT_TEMPLATE_TOKENS + cfg.generation.max_question_chars // 4
    assert est.visual_tokens == 681 + 2 * 256  # the paper's STAR and 2 recent frames in full
    assert est.context_tokens == est.visual_tokens + prompt + cfg.generation.max_new_tokens
    assert est.kv_cache == 32 * 2 * 4096 * est.context_tokens * 2
    assert kv_cache_bytes(VICUNA_7B, 1, 2) == 512 * 1024  # 0.5 MiB per token, no GQA


def test_memory_state_counts_readout_and_buffer_per_camera() -> None:
    cfg = with_overrides(AppConfig(), {'ros.image_topics': ['a', 'b']})
    # parts, the abstract's pending chunk (24 x 1 token), buffer maps and keys (spatial =
    # buffer), and the timeline (64 segments: a 4x4 mean and an 8x8 frame each)
    stored = 25 + 25 * 16 + 24 + 300 * (64 + 16) + 64 * (16 + 64)
    assert memory_state_bytes(cfg.memory, 1024, 2) == stored * 1024 * 2
    assert estimate(cfg, device='cuda').memory_state == 2 * stored * 64 * 2  # tiny: D = 64
    shared = with_overrides(cfg, {'memory.per_camera': False})
    assert (
        estimate(shared, device='cuda').memory_state * 2
        == estimate(cfg, device='cuda').memory_state
    )


def test_visual_tokens_follow_the_engine_budget_not_the_camera_count() -> None:
    cfg = with_overrides(AppConfig(), {'ros.image_topics': ['a', 'b', 'c']})
    assert estimate(cfg, device='cuda').visual_tokens == 681  # shared by the cameras asked
    capped = with_overrides(cfg, {'engine.max_visual_tokens': 300})
    assert estimate(capped, device='cuda').visual_tokens == 300


def test_measured_weights_replace_the_table() -> None:
    cfg = AppConfig()
    info = ModelInfo.from_model(FakeModel(nbytes=123 * MIB), cfg)
    assert info.measured
    assert estimate(cfg, info, device='cuda').weights == 123 * MIB


def test_check_refuses_an_impossible_profile_and_names_one_that_fits() -> None:
    cfg = with_overrides(profile('agx_orin'), {'gpu.max_gpu_memory_mb': 4096})
    est = estimate(cfg, device='cuda')
    with pytest.raises(GpuBudgetError, match=r'gpu\.max_gpu_memory_mb=4096') as err:
        check(cfg, est)
    message = str(err.value)
    assert 'the largest part is weights' in message
    assert 'orin_nano' in message
    assert 'agx_orin (' not in message


def test_check_accepts_a_fitting_profile_under_a_fake_device_limit() -> None:
    cfg = profile('orin_nano')
    check(cfg, estimate(cfg, device='cuda'), device_total_bytes=7_620 * MIB)


def test_device_smaller_than_the_configured_limit_refuses() -> None:
    cfg = profile('desktop_gpu')  # 22 GiB allowed, but the card has 12 GiB
    with pytest.raises(GpuBudgetError, match='device memory 12,288 MiB'):
        check(cfg, estimate(cfg, device='cuda'), device_total_bytes=12_288 * MIB)


def test_cpu_runs_are_never_refused() -> None:
    cfg = with_overrides(profile('agx_orin'), {'gpu.max_gpu_memory_mb': 1})
    check(cfg, estimate(cfg, device='cpu'))


def test_a_memory_larger_than_the_context_is_a_config_error() -> None:
    cfg = with_overrides(profile('desktop_gpu'), {'memory.kind': 'synopsis'})  # 11,520 tokens
    with pytest.raises(ConfigError, match='reads at most 4096 tokens'):
        check(cfg, estimate(cfg, device='cuda'))


def test_unknown_model_cannot_be_estimated_before_loading() -> None:
    cfg = with_overrides(AppConfig(), {'model.family': 'llava', 'model.path': '/m/mystery'})
    with pytest.raises(ConfigError, match="'/m/mystery'"):
        estimate(cfg, device='cuda')


def test_enforce_budget_with_a_loaded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, 'device_total_memory', lambda index=None: 1024 * MIB)
    cfg = with_overrides(AppConfig(), {'gpu.overhead_mb': 0, 'engine.max_encode_batch': 1})
    est = enforce_budget(cfg, FakeModel(nbytes=10 * MIB))
    assert est is not None
    assert est.weights == 10 * MIB
    with pytest.raises(GpuBudgetError, match='device memory 1,024 MiB'):
        enforce_budget(cfg, FakeModel(nbytes=2048 * MIB))
    on_cpu = enforce_budget(cfg, FakeModel(nbytes=2048 * MIB, device='cpu'))
    assert on_cpu is not None
    assert on_cpu.device == 'cpu'


def test_table_has_a_row_per_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert profiles.main(['--table']) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| ')]
    names = [row.split('|')[1].split()[0] for row in rows[1:]]
    assert names == list(profiles.PROFILE_ORDER)


def test_cli_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / 'bad.yaml'
    bad.write_text('model: {family: gpt}\n')
    assert profiles.main([str(bad)]) == 2
    assert "'gpt'" in capsys.readouterr().err


@pytest.mark.parametrize('doc', ['docs/install.md', 'README.md'])
def test_docs_table_is_current(doc: str) -> None:
    text = (Path(__file__).resolve().parents[1] / doc).read_text()
    table = profiles.markdown_table(profiles.profile_estimates())
    assert table in text, (
        f'{doc}: regenerate with: python -m flash_vstream_ros.config.profiles --table'
    )


def test_remote_answering_leaves_only_the_embedding_table_on_the_robot() -> None:
    """decoder=remote (no fallback): no LM layers, KV cache or prefill on the robot's GPU, so
    Flash-VStream-7b's memory and vision fit an Orin NX's 8 GiB budget."""
    cfg = with_overrides(
        profile('agx_orin'),
        {'model.decoder': 'remote', 'model.remote.url': 'http://10.0.0.5:8000'},
    )
    local, remote = estimate(profile('agx_orin'), device='cuda'), estimate(cfg, device='cuda')
    embedding = VICUNA_7B.vocab * VICUNA_7B.hidden * 2
    assert local.weights - remote.weights == released_lm_bytes(VICUNA_7B, 2)
    assert remote.weights > embedding
    assert remote.weights < 1.2 * 2**30  # CLIP ViT-L + projector + embeddings, fp16
    assert remote.kv_cache == 0
    assert remote.activations < local.activations
    small = with_overrides(cfg, {'gpu.max_gpu_memory_mb': 8192})
    check(small, estimate(small, device='cuda'), device_total_bytes=15_300 * MIB)
    torch_small = with_overrides(profile('agx_orin'), {'gpu.max_gpu_memory_mb': 8192})
    torch_estimate = estimate(torch_small, device='cuda')
    with pytest.raises(GpuBudgetError):
        check(torch_small, torch_estimate, device_total_bytes=15_300 * MIB)
    fallback = with_overrides(cfg, {'model.remote.fallback': True})
    assert estimate(fallback, device='cuda').weights == local.weights
