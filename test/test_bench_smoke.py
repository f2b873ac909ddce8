"""Smoke run of the whole benchmark suite (benchmarks/run_all.py --quick): a few minutes."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_run_all_quick_writes_a_report_with_every_benchmark_ok(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, 'benchmarks/run_all.py', '--quick', '--out', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=880, check=False,
    )  # fmt: skip
    summary = json.loads((tmp_path / 'run_all.json').read_text())
    statuses = {r['name']: r['status'] for r in summary['runs']}
    assert statuses == dict.fromkeys(('memory', 'latency', 'ros_ingest', 'encoder'), 'ok'), (
        proc.stdout[-3000:]
    )
    assert proc.returncode == 0
    report = (tmp_path / 'REPORT.md').read_text()
    for name in ('latency_vs_frames', 'bytes_vs_frames', 'rss_vs_time', 'encoder_vs_floor'):
        assert f'({name}.png)' in report
        assert (tmp_path / f'{name}.png').stat().st_size > 1000
