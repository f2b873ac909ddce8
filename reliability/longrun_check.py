"""Runs reliability.longrun in a subprocess and scores it as a table row."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
from typing import Any

from reliability.report import Row

RSS_SLACK_BYTES = 48 * 1024 * 1024  # allocator noise allowed between the first and last sample
ROOT = Path(__file__).resolve().parents[1]


def _parse(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    samples, summary = [], None
    for line in stdout.splitlines():
        if not line.startswith('{'):
            continue
        doc = json.loads(line)
        if doc.get('summary'):
            summary = doc
        else:
            samples.append(doc)
    return samples, summary


def _at_hours(samples: list[dict[str, Any]], hours: float) -> str:
    near = [s for s in samples if abs(s['stream_h'] - hours) < 1e-6]
    return f'{near[0]["memory_bytes"] / 1e6:.2f} MB' if near else '-'


def score(row: Row, samples: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Fill ``row`` from the worker's samples: flat memory bytes and RSS, nothing lost."""
    row.tried = int(summary['frames'])
    row.lost = int(summary['accepted']) - int(summary['ingested']) + int(summary['rejected'])
    # The feature buffer (300 frames at 1 fps) is full after 5 minutes of stream.
    full = [s for s in samples if s['stream_h'] * 3600 >= 300] or samples[-1:]
    sizes = {s['memory_bytes'] for s in full}
    if len(sizes) > 1:
        row.fail(f'memory bytes changed after the buffer filled: {sorted(sizes)}')
    rss = [s['rss_bytes'] for s in full]
    if rss and rss[-1] - rss[0] > RSS_SLACK_BYTES:
        row.fail(f'RSS grew {(rss[-1] - rss[0]) / 1e6:.0f} MB from the first to the last sample')
    mb = [s['rss_bytes'] / 1e6 for s in samples]
    row.notes = (
        f'{summary["frames"] / 3600:.2f} h of 1 fps stream in {summary["wall_s"]:.0f} s '
        f'({summary["fps"]} fps); memory {_at_hours(samples, 1)} at 1 h, '
        f'{_at_hours(samples, 2)} at 2 h, {_at_hours(samples, 4)} at 4 h, '
        f'{full[-1]["memory_bytes"] / 1e6:.2f} MB at the end; RSS start {mb[0]:.0f} / '
        f'end {mb[-1]:.0f} / max {max(mb):.0f} MB'
    )
    row.figures = {'samples': samples, 'summary': summary}


def run(hours: float, cache_dir: str, timeout_s: float, sample_s: float = 600.0) -> Row:
    row = Row('long run: fast-forward stream')
    env = dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    args = [sys.executable, '-m', 'reliability.longrun', '--hours', str(hours)]
    args += ['--cache-dir', cache_dir, '--sample-s', str(sample_s)]
    try:
        done = subprocess.run(
            args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        row.hangs += 1
        row.notes = f'no result within {timeout_s:.0f} s'
        return row
    samples, summary = _parse(done.stdout)
    if done.returncode != 0 or summary is None:
        row.crashes += 1
        row.problems.append(f'exit {done.returncode}: {done.stderr[-2000:]}')
        return row
    score(row, samples, summary)
    return row
