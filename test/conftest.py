"""Test set-up shared by every tier: offline hubs, loopback DDS, steady CPU threads, markers.

Tiers (markers): unit (pure, fast), model (tiny random models), ros (real rclpy, nodes as
subprocesses on loopback), launch (only where launch_ros imports), slow and gpu (never by
default; run with ``-m slow`` or ``-m gpu``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

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
def tiny_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder per test session where tiny models are built once and reused."""
    yield tmp_path_factory.mktemp('tiny_models')
