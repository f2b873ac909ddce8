"""Run the robustness suite and print its table.

    python -m reliability.run            # short: about 3 minutes on 2 cores
    python -m reliability.run --long     # by hand: about 10 minutes (100 kills, 4 h of stream)
    python -m reliability.run --only converter,persistence --json out.json

Parts: converter (malformed images straight into the converter, PNG/JPEG headers declaring
20000x20000), persistence (SIGKILL during saves, corrupt files, crafted files with consistent
checksums and bad values: NaN/inf maps, negative weights, NaN stamps...), model (OOM while
answering and encoding), longrun (hours of stream fast-forwarded), node (bad images and
questions to a running node, OOM in the node, a duplicate node), load (clients at once with a
30 Hz camera; --long adds a burst of 14 ask clients; camera restarts). ROS parts use
ROS_DOMAIN_ID 96 and 97 (``--domain`` moves both) on loopback only.
Exit code 1 when any row has a crash, hang, lost data or a failed check.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
import functools
import json
import os
from pathlib import Path
import sys
import tempfile
import time

for _key, _value in (
    ('HF_HUB_OFFLINE', '1'),
    ('TRANSFORMERS_OFFLINE', '1'),
    ('OMP_NUM_THREADS', '1'),
    ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST'),
):
    os.environ.setdefault(_key, _value)

from reliability.report import Row, problems, table  # noqa: E402

PARTS = ('converter', 'persistence', 'model', 'longrun', 'node', 'load')


@dataclass(frozen=True)
class Sizes:
    """How much of everything one run tries."""

    images: int
    compressed: int
    kills: int
    corrupt: int
    model_faults: int
    stream_hours: float
    node_images: int
    node_compressed: int
    node_questions: int
    load_s: float
    restarts: int
    burst: int


SHORT = Sizes(3000, 1000, 10, 200, 10, 1200 / 3600, 300, 100, 30, 30.0, 2, 0)
LONG = Sizes(20000, 5000, 100, 1000, 20, 4.0, 1500, 500, 150, 120.0, 6, 14)


def run_part(part: str, sizes: Sizes, work: Path, cache: str, domain: int) -> list[Row]:
    """The rows of one part (imports stay inside: ROS parts load rclpy only when run)."""
    folder = work / part
    folder.mkdir(parents=True, exist_ok=True)
    if part == 'converter':
        from reliability import converter

        return converter.run(sizes.images, sizes.compressed)
    if part == 'persistence':
        from reliability import crafted_files, persistence_faults

        return [
            persistence_faults.kill_during_save(folder, sizes.kills),
            persistence_faults.corrupt_files(folder, sizes.corrupt),
            crafted_files.crafted_files(folder),
        ]
    if part == 'model':
        from reliability import model_faults

        return [model_faults.run(cache, sizes.model_faults)]
    if part == 'longrun':
        from reliability import longrun_check

        return [longrun_check.run(sizes.stream_hours, cache, timeout_s=900.0)]
    if part == 'node':
        from reliability import node_inputs

        return node_inputs.run(
            folder, domain, cache, sizes.node_images, sizes.node_compressed, sizes.node_questions
        )
    from reliability import load

    return load.run(folder, domain + 1, cache, sizes.load_s, sizes.restarts, burst=sizes.burst)


def guarded(part: str, call: Callable[[], list[Row]]) -> list[Row]:
    """A part that raises is reported as a crashed row, and the others still run."""
    try:
        return call()
    except Exception as exc:
        return [Row(part, crashes=1, problems=[f'{type(exc).__name__}: {exc}'])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='flash_vstream_ros robustness suite')
    parser.add_argument('--long', action='store_true', help='the long version (by hand)')
    parser.add_argument('--short', action='store_true', help='the short version (default)')
    parser.add_argument('--only', default='', help=f'comma-separated parts of {PARTS}')
    parser.add_argument('--json', default='', help='write the rows as JSON to this file')
    parser.add_argument('--work', default='', help='folder for logs and files (default: temp)')
    parser.add_argument('--cache-dir', default='', help='tiny model cache (default: in --work)')
    parser.add_argument('--domain', type=int, default=96, help='ROS_DOMAIN_ID (and +1)')
    args = parser.parse_args(argv)
    parts = [p for p in args.only.split(',') if p] or list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f'unknown parts {unknown}; choose from {PARTS}')
    sizes = LONG if args.long else SHORT
    work = Path(args.work or tempfile.mkdtemp(prefix='fvs_reliability_'))
    cache = args.cache_dir or str(work / 'tiny_models')
    rows: list[Row] = []
    t0 = time.monotonic()
    for part in parts:
        print(f'== {part}', file=sys.stderr, flush=True)
        rows += guarded(part, functools.partial(run_part, part, sizes, work, cache, args.domain))
    print(
        f'\nreliability suite ({"long" if args.long else "short"}), '
        f'{time.monotonic() - t0:.0f} s, logs in {work}\n'
    )
    print(table(rows))
    listed = problems(rows)
    if listed:
        print('\nproblems:\n' + listed)
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_json() for r in rows], indent=1, default=str))
    return 0 if all(r.ok() for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
