"""ROS ingest: a 640x480 camera at 30 Hz, best effort, into the node for a minute.

Starts the node (tiny model) as a subprocess, a synthetic camera and a status monitor
(benchmarks/ros_ingest_procs.py) as two more, samples the node's CPU and RSS with psutil every
second, and reads frames received / ingested / skipped / dropped / rejected from
``~/memory_status``. Runs twice: with the loopback Fast DDS profile (16 MB shared memory, UDP on
127.0.0.1) and with plain LOCALHOST discovery (512 KB shared memory: large best-effort frames are
lost on the way). Every process gets its own ROS_DOMAIN_ID (90-95) and is ended by its PID.

    python benchmarks/bench_ros_ingest.py --duration 60 --out bench_out/ros_ingest
    python benchmarks/bench_ros_ingest.py --quick        # 10 s, profile only
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
import json
import os
from pathlib import Path
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PROCS = Path(__file__).resolve().parent / 'ros_ingest_procs.py'
TIMED_NODE = Path(__file__).resolve().parent / 'node_timed.py'
PROFILE = ROOT / 'config' / 'fastdds_loopback.xml'
NODE_NAME = 'flash_vstream'
NODE_MODULE = 'flash_vstream_ros.ros.node'
FILL_RATE_HZ = 10.0


@dataclass(frozen=True)
class Mode:
    """One DDS setting (and node overrides) to run the benchmark under."""

    name: str
    domain_id: int
    profile: Path | None  # Fast DDS profile file, None = plain LOCALHOST discovery
    overrides: tuple[str, ...] = ()  # KEY=VALUE for the node, on top of --set

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ROS_DOMAIN_ID=str(self.domain_id),
            HF_HUB_OFFLINE='1',
            TRANSFORMERS_OFFLINE='1',
            OMP_NUM_THREADS='1',
            PYTHONUNBUFFERED='1',
        )
        env.pop('ROS_LOCALHOST_ONLY', None)
        if self.profile is None:
            env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
            env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
        else:
            env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SYSTEM_DEFAULT'
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(self.profile)
        env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
        return env


MODES = {
    'profile': 'Fast DDS loopback profile (16 MB shared memory, UDP on 127.0.0.1)',
    'localhost': 'ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, no profile',
    'fill': f'profile, ingest at {FILL_RATE_HZ:g} Hz: the 300-frame feature buffer fills in '
    f'{300 / FILL_RATE_HZ:.0f} s, so RSS after that shows whether memory stays flat',
}


def make_mode(name: str, domain_id: int) -> Mode:
    if name == 'localhost':
        return Mode(name, domain_id, None)
    overrides = (f'engine.ingest_rate_hz={FILL_RATE_HZ}',) if name == 'fill' else ()
    return Mode(name, domain_id, find_profile(), overrides)


def find_profile() -> Path:
    if not PROFILE.is_file():
        raise FileNotFoundError(f'no Fast DDS loopback profile at {PROFILE}')
    return PROFILE


def write_params(path: Path, overrides: list[str]) -> None:
    """A ROS params file (JSON is YAML) for the node: tiny model on CPU plus the overrides."""
    from flash_vstream_ros.config import AppConfig, flatten, unflatten, with_overrides

    flat: dict[str, Any] = {
        'model.family': 'tiny',
        'model.path': '',
        'model.device': 'cpu',
        'ros.autostart': True,
        'persistence.path': '',
    }
    for item in overrides:
        key, _, value = item.partition('=')
        flat[key] = parse_value(value)
    valid = flatten(with_overrides(AppConfig(), flat))  # validated and typed (2 -> 2.0)
    params = unflatten({key: valid[key] for key in flat})  # only the overrides go into the file
    path.write_text(json.dumps({f'/{NODE_NAME}': {'ros__parameters': params}}, indent=1))


def parse_value(text: str) -> Any:
    """A --set value: JSON (2, 0.5, true, [\"a\"]) or else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def end_process(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> str:
    """SIGINT, then SIGTERM, then SIGKILL, to this PID and the children it started."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    how = 'exited'
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        how = sig.name
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
    for child in children:
        if child.is_running():
            child.kill()
    return how


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # the monitor may be mid-line
            continue
    return out


def statuses(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_lines(path) if r.get('kind') == 'status']


def wait_active(lines: Path, node: subprocess.Popen[bytes], timeout_s: float) -> float:
    """Seconds until the node reports state 'active' on ~/memory_status."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if node.poll() is not None:
            raise RuntimeError(f'node exited with code {node.returncode} before becoming active')
        if any(s.get('state') == 'active' for s in statuses(lines)):
            return time.monotonic() - start
        time.sleep(0.5)
    raise TimeoutError(f'node not active after {timeout_s:.0f} s (no active ~/memory_status)')


def tree_sample(proc: psutil.Process) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process and its children."""
    cpu, rss = 0.0, 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            cpu += times.user + times.system
            rss += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return cpu, rss


def sample_until(
    node: subprocess.Popen[bytes], publisher: subprocess.Popen[bytes], timeout_s: float
) -> list[dict[str, float]]:
    """Node CPU% and RSS every second while the publisher runs."""
    proc = psutil.Process(node.pid)
    start = time.monotonic()
    cpu0, _ = tree_sample(proc)
    prev_t, prev_cpu = start, cpu0
    samples: list[dict[str, float]] = []
    while publisher.poll() is None and time.monotonic() - start < timeout_s:
        time.sleep(1.0)
        if node.poll() is not None:
            break
        now = time.monotonic()
        cpu, rss = tree_sample(proc)
        samples.append(
            {
                't': now - start,
                'cpu_percent': 100.0 * (cpu - prev_cpu) / (now - prev_t),
                'cpu_s': cpu - cpu0,
                'rss_mb': rss / 2**20,
            }
        )
        prev_t, prev_cpu = now, cpu
    return samples


class Procs:
    """The processes of one mode, each logging to its own file, all ended on exit."""

    def __init__(self, work: Path, mode: Mode) -> None:
        self.work, self.mode, self.env = work, mode, mode.env()
        self.stack = contextlib.ExitStack()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = self.stack.enter_context(self.log(name).open('wb'))
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> Path:
        return self.work / f'{name}_{self.mode.name}.log'

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):  # publisher, monitor, then the node (longest grace)
            end_process(proc, 20.0 if proc is self.procs[0] else 5.0)
        self.stack.close()


def run_mode(mode: Mode, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    params, lines = work / f'params_{mode.name}.yaml', work / f'status_{mode.name}.jsonl'
    pub_json = work / f'publisher_{mode.name}.json'
    write_params(params, [*args.set, *mode.overrides])
    result: dict[str, Any] = {
        'mode': mode.name,
        'domain_id': mode.domain_id,
        'profile': str(mode.profile) if mode.profile else None,
        'discovery_range': mode.env()['ROS_AUTOMATIC_DISCOVERY_RANGE'],
        'overrides': [*args.set, *mode.overrides],
    }
    with Procs(work, mode) as procs:
        py = sys.executable
        timing = work / f'callback_{mode.name}.json'
        procs.env['NODE_TIMING_OUT'] = str(timing)
        exe = [py, '-m', NODE_MODULE] if args.untimed else [py, str(TIMED_NODE)]
        node = procs.start('node', [*exe, '--ros-args', '--params-file', str(params)])
        procs.start(
            'monitor',
            [
                py,
                str(PROCS),
                'monitor',
                '--status',
                f'/{NODE_NAME}/memory_status',
                '--lines',
                str(lines),
            ],
        )
        try:
            result['ready_s'] = wait_active(lines, node, args.ready_timeout)
            rss_idle = tree_sample(psutil.Process(node.pid))[1] / 2**20
            before = statuses(lines)[-1]
            publisher = procs.start('pub', [
                py, str(PROCS), 'publish', '--topic', '/image_raw', '--rate', str(args.rate),
                '--duration', str(args.duration), '--width', str(args.width), '--height',
                str(args.height), '--result', str(pub_json)])  # fmt: skip
            samples = sample_until(node, publisher, args.duration + 60)
            publisher.wait(30)
            time.sleep(3.0)  # let the last frames be counted and one more status be published
            result.update(summarize(before, statuses(lines), samples, pub_json, rss_idle))
            result['diagnostics'] = last_diagnostics(lines)
            result['node_alive'] = node.poll() is None
        finally:
            result['node_log_tail'] = tail(procs.log('node'))
    result['node_returncode'] = node.returncode
    result['callback'] = json.loads(timing.read_text()) if timing.exists() else {}
    return result


def tail(path: Path, lines: int = 15) -> list[str]:
    try:
        return path.read_text(errors='replace').splitlines()[-lines:]
    except OSError:
        return []


def last_diagnostics(lines: Path) -> dict[str, Any]:
    diags = [r for r in read_lines(lines) if r.get('kind') == 'diagnostics']
    return diags[-1]['status'] if diags else {}


COUNTERS = (
    'frames_received',
    'frames_ingested',
    'frames_skipped_rate',
    'frames_dropped_queue',
    'frames_rejected',
)


def summarize(
    before: dict[str, Any],
    after: list[dict[str, Any]],
    samples: list[dict[str, float]],
    pub_json: Path,
    rss_idle: float,
) -> dict[str, Any]:
    """Counts during the run (last status minus the one before publishing), CPU and RSS."""
    pub = json.loads(pub_json.read_text()) if pub_json.exists() else {}
    last = after[-1]
    counts = {k: int(last.get(k, 0)) - int(before.get(k, 0)) for k in COUNTERS}
    sent = int(pub.get('sent', 0))
    rss = [s['rss_mb'] for s in samples]
    cpu = [s['cpu_percent'] for s in samples]
    third = max(len(rss) // 3, 1)
    cpu_s = samples[-1]['cpu_s'] if samples else 0.0
    received = max(counts['frames_received'], 1)
    return {
        'publisher': pub,
        'sent': sent,
        **counts,
        'delivered_ratio': counts['frames_received'] / sent if sent else 0.0,
        'encode_ms': float(last.get('encode_ms', 0.0)),
        'update_ms': float(last.get('update_ms', 0.0)),
        'ingest_rate_hz': float(last.get('ingest_rate_hz', 0.0)),
        'memory_bytes': int(last.get('memory_bytes', 0)),
        'memory_bytes_start': int(before.get('memory_bytes', 0)),
        'rss_slope_mb_per_min_last_half': slope_per_min(samples[len(samples) // 2 :]),
        # all of the node's CPU time (DDS receive, callbacks, encode, update, status) per frame
        'node_cpu_ms_per_received_frame': 1e3 * cpu_s / received,
        'rss_idle_mb': rss_idle,
        'rss_start_mb': rss[0] if rss else 0.0,
        'rss_end_mb': rss[-1] if rss else 0.0,
        'rss_max_mb': max(rss, default=0.0),
        'rss_growth_last_two_thirds_mb': (rss[-1] - rss[third - 1]) if rss else 0.0,
        'cpu_mean_percent': statistics.fmean(cpu) if cpu else 0.0,
        'cpu_max_percent': max(cpu, default=0.0),
        'samples': samples,
        'status_series': [
            {k: s.get(k) for k in ('t', *COUNTERS, 'memory_bytes')}
            for s in after
            if s['t'] >= before['t']
        ],
    }


def slope_per_min(samples: list[dict[str, float]]) -> float:
    """Least-squares slope of RSS (MB per minute) over ``samples``."""
    if len(samples) < 2:
        return 0.0
    ts, ys = [s['t'] for s in samples], [s['rss_mb'] for s in samples]
    t_mean, y_mean = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - t_mean) ** 2 for t in ts)
    cov = sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True))
    return 60.0 * cov / var if var else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='bench_out/ros_ingest', help='folder for ros_ingest.json')
    parser.add_argument('--duration', type=float, default=60.0, help='seconds of publishing')
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument(
        '--modes',
        nargs='+',
        default=['profile', 'localhost'],
        choices=list(MODES),
        help='; '.join(f'{k}: {v}' for k, v in MODES.items()),
    )
    parser.add_argument('--domain-id', type=int, default=90, help='first of consecutive domains')
    parser.add_argument('--ready-timeout', type=float, default=240.0)
    parser.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='config override for the node, e.g. engine.ingest_rate_hz=2',
    )
    parser.add_argument('--quick', action='store_true', help='10 s, profile mode only')
    parser.add_argument(
        '--untimed',
        action='store_true',
        help='run python -m flash_vstream_ros.ros.node as is (no callback timer)',
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.modes = min(args.duration, 10.0), ['profile']
    sys.path.insert(0, str(ROOT))
    modes = [make_mode(m, args.domain_id + i) for i, m in enumerate(args.modes)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix='bench_ros_') as tmp:
        for mode in modes:
            print(f'--- {mode.name}: domain {mode.domain_id}, profile {mode.profile}', flush=True)
            try:
                runs.append(run_mode(mode, args, Path(tmp)))
            except Exception as exc:  # reported in the JSON, the other mode still runs
                runs.append(
                    {
                        'mode': mode.name,
                        'error': f'{type(exc).__name__}: {exc}',
                        'node_log_tail': tail(Path(tmp) / f'node_{mode.name}.log'),
                    }
                )
            print_run(runs[-1])
    result = {
        'benchmark': 'ros_ingest',
        'duration_s': args.duration,
        'rate_hz': args.rate,
        'size': [args.width, args.height],
        'overrides': args.set,
        'runs': runs,
        'quick': bool(args.quick),
    }
    (out / 'ros_ingest.json').write_text(json.dumps(result, indent=2))
    return 0 if all('error' not in r for r in runs) else 1


def print_run(run: dict[str, Any]) -> None:
    if 'error' in run:
        print(f'{run["mode"]}: FAILED {run["error"]}')
        print('\n'.join(run.get('node_log_tail', [])))
        return
    print(
        f'{run["mode"]}: sent {run["sent"]}, delivered {run["frames_received"]} '
        f'({100 * run["delivered_ratio"]:.1f}%), ingested {run["frames_ingested"]}, '
        f'skipped (rate) {run["frames_skipped_rate"]}, dropped (queue) '
        f'{run["frames_dropped_queue"]}, rejected {run["frames_rejected"]}'
    )
    print(
        f'  node CPU mean {run["cpu_mean_percent"]:.1f}% (max {run["cpu_max_percent"]:.0f}%), '
        f'RSS idle {run["rss_idle_mb"]:.0f} MB, start {run["rss_start_mb"]:.0f}, end '
        f'{run["rss_end_mb"]:.0f}, max {run["rss_max_mb"]:.0f}; growth over the last 2/3 '
        f'{run["rss_growth_last_two_thirds_mb"]:+.1f} MB'
    )
    cb = run.get('callback', {})
    timed = (
        f'callback mean {cb["mean_ms"]:.2f} ms, p95 {cb["p95_ms"]:.2f}, max '
        f'{cb["max_ms"]:.1f} ({cb["count"]} calls)'
        if cb.get('count')
        else 'callback untimed'
    )
    print(
        f'  encode {run["encode_ms"]:.1f} ms, update {run["update_ms"]:.2f} ms, {timed}; node '
        f'CPU per delivered frame {run["node_cpu_ms_per_received_frame"]:.2f} ms'
    )


if __name__ == '__main__':
    raise SystemExit(main())
