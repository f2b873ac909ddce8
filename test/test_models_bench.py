"""The GPU benchmark script runs end to end at tiny sizes on the CPU (its smoke run)."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / 'benchmarks' / 'gpu_bench.py'


def test_gpu_bench_tiny_smoke_run(tmp_path: Path) -> None:
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'OUT': str(tmp_path)}
    cmd = [
        sys.executable,
        str(SCRIPT),
        '--tiny',
        '--model',
        'v1',
        '--frames',
        '40',
        '--reps',
        '1',
        '--new-tokens',
        '4',
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '| encode_ms_per_frame_b8 |' in done.stdout
    results = json.loads((tmp_path / 'gpu_bench.json').read_text())
    assert results['visual_tokens_after_40'] == 681
    assert results['visual_tokens_after_10'] < 681
    for key in ('update_ms_frames_11_100', 'answer_s_after_40', 'first_token_s_after_10'):
        assert results[key] > 0


def test_gpu_bench_v2_tiny_smoke_run(tmp_path: Path) -> None:
    """The Flash-VStream-Qwen shape at tiny sizes: the synopsis memory at v2's sizes."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'OUT': str(tmp_path)}
    cmd = [sys.executable, str(SCRIPT), '--tiny', '--model', 'v2', '--frames', '40']
    cmd += ['--reps', '1', '--new-tokens', '2']
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / 'gpu_bench.json').read_text())
    assert 'Flash-VStream-Qwen-7b' in results['model']
    assert results['visual_tokens_after_10'] == 10 * (64 + 256)
    assert results['visual_tokens_after_40'] == 40 * 64 + 30 * 256  # clusters not yet full
    assert results['answer_s_after_40'] > 0
