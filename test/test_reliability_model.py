"""Reliability suite on the tiny model: model failures and a fast-forwarded stream.

The full figures come from ``python -m reliability.run``; here the same code runs small.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import longrun_check, model_faults

pytestmark = pytest.mark.model


def test_engine_survives_model_failures(tiny_cache_dir: Path) -> None:
    row = model_faults.run(str(tiny_cache_dir), rounds=5)
    assert row.ok(), row.problems
    assert row.errors >= 10  # five failed questions, at least five rejected frames


def test_fast_forward_stream_keeps_memory_flat_and_loses_nothing(tiny_cache_dir: Path) -> None:
    # Ten minutes of 1 fps stream: past the 300-frame buffer, sampled every two minutes.
    row = longrun_check.run(600 / 3600, str(tiny_cache_dir), timeout_s=240.0, sample_s=120.0)
    assert row.ok(), row.problems
    assert row.tried == 600
    samples = row.figures['samples']
    full = [s['memory_bytes'] for s in samples if s['stream_h'] * 3600 >= 300]
    assert len(full) >= 3
    assert len(set(full)) == 1
