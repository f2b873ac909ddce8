"""Every board profile in config/profiles loads into AppConfig, validates and fits its budget."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from flash_vstream_ros.config import AppConfig, flatten, load_yaml
from flash_vstream_ros.config.budget import estimate
from flash_vstream_ros.config.profiles import PROFILE_ORDER, PROFILES_DIR, profile_paths

pytestmark = pytest.mark.unit

PROFILES = sorted(PROFILES_DIR.glob('*.yaml'))
GPU_PROFILES = [p for p in PROFILES if p.stem != 'cpu']
ALWAYS = {'model.family'}  # written in every profile, default or not, for the reader


def _params(path: Path) -> dict[str, object]:
    data = yaml.safe_load(path.read_text())
    return flatten_plain(data['/**']['ros__parameters'])


def flatten_plain(data: dict[str, object], prefix: str = '') -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flatten_plain(value, f'{name}.'))
        else:
            out[name] = value
    return out


def test_every_board_has_a_profile() -> None:
    assert [p.stem for p in profile_paths()] == list(PROFILE_ORDER)


@pytest.mark.parametrize('path', PROFILES, ids=lambda p: p.stem)
def test_profile_loads_and_validates(path: Path) -> None:
    cfg = load_yaml(path, AppConfig)
    assert isinstance(cfg, AppConfig)
    dataclasses.replace(cfg)  # runs every section's validation again


@pytest.mark.parametrize('path', PROFILES, ids=lambda p: p.stem)
def test_profile_holds_only_values_that_differ_from_the_defaults(path: Path) -> None:
    defaults = flatten(AppConfig())
    same = {k: v for k, v in _params(path).items() if defaults[k] == v and k not in ALWAYS}
    assert not same, f'{path.name} repeats default values: {same}'


@pytest.mark.parametrize('path', GPU_PROFILES, ids=lambda p: p.stem)
def test_gpu_profile_fits_its_own_budget_and_context(path: Path) -> None:
    cfg = load_yaml(path, AppConfig)
    assert cfg.model.device == 'cuda'
    est = estimate(cfg, device='cuda')
    assert cfg.model.dtype == 'float16'
    assert cfg.gpu.max_gpu_memory_mb > 0
    assert est.total <= cfg.gpu.max_gpu_memory_mb * 2**20, est.describe()
    assert est.context_tokens <= est.max_context


def test_jetson_profiles_leave_room_for_the_os() -> None:
    board_mib = {'orin_nano': 7_620, 'orin_nx': 15_656, 'agx_orin': 30_536}  # shared CPU+GPU
    for name, total in board_mib.items():
        cfg = load_yaml(PROFILES_DIR / f'{name}.yaml', AppConfig)
        assert cfg.gpu.max_gpu_memory_mb <= total - 2_048, name


def test_seven_b_does_not_fit_orin_nx() -> None:
    nx = load_yaml(PROFILES_DIR / 'orin_nx.yaml', AppConfig)
    agx = load_yaml(PROFILES_DIR / 'agx_orin.yaml', AppConfig)
    seven_b = dataclasses.replace(agx, gpu=nx.gpu)
    assert estimate(seven_b, device='cuda').total > nx.gpu.max_gpu_memory_mb * 2**20
