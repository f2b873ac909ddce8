"""Test set-up shared by every tier: offline hubs, loopback DDS, steady CPU threads, markers.

Tiers (markers): unit (pure, fast), model (tiny random models), ros (real rclpy, nodes as
subprocesses on loopback), launch (only where launch_ros imports), slow and gpu (never by
default; run with ``-m slow`` or ``-m gpu``), remote (a real vLLM server: skipped unless
``FVS_VLLM_PYTHON`` names the python of scripts/setup_vllm_venv.sh's venv).
"""

from __future__ import annotations

import os
from pathlib import Path
import sys

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # the source tree wins over an installed copy

# Set before anything imports transformers or rclpy.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('OMP_NUM_THREADS', '1')


@pytest.fixture(scope='session')
def tiny_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per test session where tiny models are built once and reused."""
    return tmp_path_factory.mktemp('tiny_models')


TIERS = frozenset({'unit', 'model', 'ros', 'launch', 'slow', 'gpu', 'remote'})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to a tier (markers registered in pyproject.toml): refuse others."""
    untiered = [
        item.nodeid for item in items if not TIERS & {mark.name for mark in item.iter_markers()}
    ]
    if untiered:
        raise pytest.UsageError(
            f'tests without a tier marker ({", ".join(sorted(TIERS))}): {untiered[:10]}'
        )
