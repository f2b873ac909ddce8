"""Run the CPU benchmarks one after another and write one report with plots.

    python benchmarks/run_all.py                 # about 12-15 min on 2 cores -> bench_out/
    python benchmarks/run_all.py --quick         # smoke run, about 2-3 min
    python benchmarks/run_all.py --only encoder ros_ingest --out /tmp/b

Each benchmark runs as a subprocess with ``--out <out>/<name>`` and writes its JSON there;
this script collects the JSON, draws PNG plots (plots.py) and writes ``<out>/REPORT.md``
(report.py) and ``<out>/run_all.json``. A benchmark that fails, times out or is not there is
reported as such; the others still run. Exit code 1 when any benchmark did not succeed.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import asdict, dataclass
import datetime as dt
import importlib.metadata
import json
import os
from pathlib import Path
import platform
import shlex
import signal
import subprocess
import sys
import time
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.report import BenchRun, render  # noqa: E402


@dataclass(frozen=True)
class BenchSpec:
    """How run_all starts one benchmark script."""

    name: str
    title: str
    script: str  # relative to benchmarks/
    timeout_s: float
    quick_timeout_s: float
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ('--quick',)
    out_file: str = ''  # '' = --out takes a folder; else --out <folder>/<out_file>


BENCHES: tuple[BenchSpec, ...] = (
    BenchSpec('memory', '1. Memory update cost and state bytes vs frames', 'bench_memory.py',
              300, 120),
    BenchSpec('latency', '2. Answer latency vs stream length (ours vs keep-every-frame)',
              'bench_latency.py', 300, 150,
              quick_args=('--frames', '10', '100', '1000', '--reps', '2', '--baseline-reps', '1',
                          '--tiny-only'),
              out_file='latency.json'),
    BenchSpec('ros_ingest', '3. ROS ingest: 640x480 at 30 Hz, best effort, into the node',
              'bench_ros_ingest.py', 420, 150,
              ('--duration', '60', '--modes', 'profile', 'localhost', 'fill')),
    BenchSpec('encoder', '4. Vision encoder throughput vs the FLOP floor', 'bench_encoder.py',
              300, 90, ('--max-seconds', '150')),
)  # fmt: skip


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault('HF_HUB_OFFLINE', '1')
    env.setdefault('TRANSFORMERS_OFFLINE', '1')
    env.setdefault('OMP_NUM_THREADS', '1')
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env['PYTHONUNBUFFERED'] = '1'
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
    return env


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT to the benchmark (it ends its own children), then SIGKILL to its process group.

    The group is the one this script created for the benchmark (start_new_session=True).
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of this benchmark only
    proc.wait()


def execute(cmd: list[str], folder: Path, timeout_s: float) -> tuple[int | None, bool, float]:
    """(exit code, timed out, seconds) of one command; stdout to stdout.txt, stderr to log.txt."""
    start = time.monotonic()
    with (folder / 'stdout.txt').open('ab') as out, (folder / 'log.txt').open('ab') as err:
        err.write(f'$ {shlex.join(cmd)}\n'.encode())
        err.flush()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=child_env(), stdout=out, stderr=err, start_new_session=True
        )
        try:
            proc.wait(timeout_s)
            return proc.returncode, False, time.monotonic() - start
        except subprocess.TimeoutExpired:
            stop_group(proc)
            return proc.returncode, True, time.monotonic() - start
        except KeyboardInterrupt:
            stop_group(proc)
            raise


def collect_json(folder: Path) -> dict[str, Any]:
    """The benchmark's JSON: the file's content when there is one, {stem: content} otherwise."""
    found: dict[str, Any] = {}
    for path in sorted(folder.glob('*.json')):
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            found[path.stem] = {'unreadable': f'{type(exc).__name__}: {exc}'}
    if len(found) == 1:
        (only,) = found.values()
        return only if isinstance(only, dict) else {'rows': only}
    return found


def run_bench(spec: BenchSpec, out: Path, quick: bool, scale: float) -> BenchRun:
    script = ROOT / 'benchmarks' / spec.script
    folder = out / spec.name
    extra = list(spec.quick_args if quick else spec.args)
    target = folder / spec.out_file if spec.out_file else folder
    cmd = [sys.executable, str(script.relative_to(ROOT)), '--out', str(target), *extra]
    run = BenchRun(spec.name, spec.title, ['python', *cmd[1:]], 'missing')  # shown
    if not script.exists():
        run.note = f'benchmarks/{spec.script} is not in the repository yet.'
        return run
    folder.mkdir(parents=True, exist_ok=True)
    for old in (*folder.glob('*.json'), folder / 'stdout.txt', folder / 'log.txt'):
        old.unlink(missing_ok=True)
    timeout = (spec.quick_timeout_s if quick else spec.timeout_s) * scale
    code, timed_out, wall = execute(cmd, folder, timeout)
    errors = (folder / 'log.txt').read_text(errors='replace')
    if quick and code == 2 and 'unrecognized arguments' in errors:  # no such quick option
        run.note = f'{spec.script} does not take {" ".join(extra)}; ran it without.'
        cmd = [c for c in cmd if c not in extra]
        run.command = ['python', *cmd[1:]]
        code, timed_out, more = execute(cmd, folder, timeout)
        wall += more
    run.returncode, run.wall_s = code, wall
    run.status = 'timeout' if timed_out else ('ok' if code == 0 else 'failed')
    if timed_out:
        run.note = (run.note + ' ' if run.note else '') + f'Stopped after {timeout:.0f} s.'
    run.data = collect_json(folder)
    run.stdout = (folder / 'stdout.txt').read_text(errors='replace')
    run.log_tail = (folder / 'log.txt').read_text(errors='replace').splitlines()[-30:]
    if run.status != 'ok':  # what it printed last, then its errors
        run.log_tail = [*run.stdout.splitlines()[-10:], *run.log_tail]
    return run


def machine() -> dict[str, Any]:
    cpu = ''
    try:
        cpu = next(
            (
                line.split(':', 1)[1].strip()
                for line in Path('/proc/cpuinfo').read_text().splitlines()
                if line.startswith('model name')
            ),
            '',
        )
        mem_kb = next(
            int(line.split()[1])
            for line in Path('/proc/meminfo').read_text().splitlines()
            if line.startswith('MemTotal')
        )
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    try:
        torch_version = importlib.metadata.version('torch')
    except importlib.metadata.PackageNotFoundError:
        torch_version = 'not installed'
    return {
        'cpu': cpu or platform.processor(),
        'cores': os.cpu_count(),
        'memory_gb': round(mem_kb / 2**20, 1),
        'torch': torch_version,
        'python': platform.python_version(),
        'loadavg_start': list(os.getloadavg()),
    }


def write_report(runs: list[BenchRun], out: Path, header: dict[str, Any]) -> Path:
    """Plots and REPORT.md for the runs; plot problems are added to the runs' notes."""
    from benchmarks.plots import make_plots

    figures: dict[str, dict[str, str]] = {}
    for run in runs:
        if run.data:
            figures[run.name], problems = make_plots(run.name, run.data, out)
            if problems:
                run.note = ' '.join([run.note, *problems]).strip()
    report = out / 'REPORT.md'
    report.write_text(render(runs, figures, header))
    (out / 'run_all.json').write_text(
        json.dumps(
            {'header': header, 'runs': [asdict(r) for r in runs], 'figures': figures}, indent=1
        )
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=str(ROOT / 'bench_out'), help='output folder')
    parser.add_argument('--quick', action='store_true', help='smoke run (each script --quick)')
    names = [b.name for b in BENCHES]
    parser.add_argument('--only', nargs='+', choices=names, default=names)
    parser.add_argument(
        '--timeout-scale',
        type=float,
        default=1.0,
        help='multiply every benchmark timeout (slow or busy machines)',
    )
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    header: dict[str, Any] = {
        'command': shlex.join(['python', 'benchmarks/run_all.py', *(argv or sys.argv[1:])]),
        'date': dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'quick': args.quick,
        'machine': machine(),
    }
    start = time.monotonic()
    runs = []
    for spec in BENCHES:
        if spec.name not in args.only:
            continue
        print(f'=== {spec.name}: {spec.script}', flush=True)
        runs.append(run_bench(spec, out, args.quick, args.timeout_scale))
        print(f'    {runs[-1].status} in {runs[-1].wall_s:.0f} s {runs[-1].note}', flush=True)
    header['wall_s'] = time.monotonic() - start
    header['machine']['loadavg_end'] = list(os.getloadavg())
    report = write_report(runs, out, header)
    print(f'report: {report} ({header["wall_s"]:.0f} s)')
    return 0 if all(r.status == 'ok' for r in runs) else 1


if __name__ == '__main__':
    raise SystemExit(main())
