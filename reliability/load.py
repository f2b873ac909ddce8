"""Load: several clients ask at once while a 30 Hz 640x480 camera streams; then camera faults.

The node (tiny model, namespace /load, best-effort camera QoS as drivers publish) and the
synthetic camera run as subprocesses with the Fast DDS loopback profile. Client threads (ask
service and ask_stream action) ask back to back for the given time. Every call must come back
within a timeout, answered or refused with a reason (busy); ingest must never stall; the node's
RSS must stay bounded. Afterwards the camera is stopped (SIGINT or SIGKILL) and restarted
several times: ingest must resume each time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
import signal
import threading
import time
from typing import Any

import numpy as np
import psutil

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.srv import Ask
from reliability import procs
from reliability.question_cases import fill
from reliability.report import Row

NAMESPACE = '/load'
NODE = f'{NAMESPACE}/flash_vstream'
STATUS = f'{NODE}/memory_status'
TOPIC = f'{NAMESPACE}/image_raw'
CALL_TIMEOUT_S = 60.0
STALL_S = 5.0  # no new frame ingested for this long while the camera streams = a stall
RSS_BOUND_BYTES = 300 * 1024 * 1024  # growth of the node's RSS allowed during the load
INGEST_HZ = 2.0
QUESTIONS = (
    'What is in front of the robot?',
    'Which colours do you see?',
    'What happened in the last ten seconds?',
    'Is there a red object?',
)


@dataclass
class Tally:
    """Outcomes of all client calls (threads add under the lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: int = 0
    busy: int = 0
    refused: int = 0
    no_reason: int = 0
    hangs: int = 0
    latencies: list[float] = field(default_factory=list)
    hang_calls: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, outcome: str, latency: float = 0.0, why: str = '') -> None:
        with self.lock:
            if outcome == 'answered':
                self.answered += 1
                self.latencies.append(latency)
            elif outcome == 'busy':
                self.busy += 1
            elif outcome == 'hang':
                self.hangs += 1
                self.hang_calls.append(why)
            elif outcome == 'no_reason':
                self.no_reason += 1
            else:
                self.refused += 1
                if len(self.problems) < 5:
                    self.problems.append(why[:200])


def _classify(result: Any, latency: float, tally: Tally) -> None:
    if result.success:
        tally.add('answered', latency)
    elif not result.error_message.strip():
        tally.add('no_reason')
    elif 'busy' in result.error_message:
        tally.add('busy')
    else:
        tally.add('refused', why=result.error_message)


def _service_loop(client: procs.Client, deadline: float, tally: Tally, seed: int) -> None:
    ask = client.service(Ask, f'{NODE}/ask')
    ask.wait_for_service(timeout_sec=30.0)
    rng = np.random.default_rng(seed)
    calls = 0
    while time.monotonic() < deadline:
        fields = {'question': str(rng.choice(QUESTIONS)), 'last_s': float(rng.choice([0, 10]))}
        t0 = time.monotonic()
        calls += 1
        result = procs.call(ask, fill(Ask.Request(), fields), CALL_TIMEOUT_S)
        if result is None:
            tally.add('hang', why=f'ask client {seed}: call {calls} got no response')
            continue
        _classify(result, time.monotonic() - t0, tally)


def _action_loop(client: procs.Client, deadline: float, tally: Tally, seed: int) -> None:
    stream = client.action(AskStream, f'{NODE}/ask_stream')
    stream.wait_for_server(timeout_sec=30.0)
    rng = np.random.default_rng(seed)
    while time.monotonic() < deadline:
        goal = fill(AskStream.Goal(), {'question': str(rng.choice(QUESTIONS))})
        t0 = time.monotonic()
        status, result = procs.ask_action(client, stream, goal, CALL_TIMEOUT_S)
        if status == 'hang':
            tally.add('hang', why=f'ask_stream client {seed}: {result}')
        elif status == 'rejected':
            tally.add('busy')  # the server refuses goals beyond its queue when they arrive
            time.sleep(0.05)
        else:
            _classify(result, time.monotonic() - t0, tally)


@dataclass
class Samples:
    """memory_status and the node's RSS, sampled every 0.25 s."""

    t: list[float] = field(default_factory=list)
    ingested: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    def max_gap(self) -> float:
        """Longest time without a new ingested frame."""
        gap, last_t, last_n = 0.0, self.t[0], self.ingested[0]
        for t, n in zip(self.t, self.ingested, strict=True):
            if n > last_n:
                last_t, last_n = t, n
            gap = max(gap, t - last_t)
        return gap


def _sample_until(
    client: procs.Client, pid: int, stop: Callable[[], bool], samples: Samples
) -> None:
    proc = psutil.Process(pid)
    while not stop():
        s = client.latest(STATUS)
        if s is not None:
            samples.t.append(time.monotonic())
            samples.ingested.append(int(s.frames_ingested))
            samples.received.append(int(s.frames_received))
            samples.dropped.append(int(s.frames_dropped_queue))
            samples.rss.append(proc.memory_info().rss)
        time.sleep(0.25)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float('nan')


def load_row(
    client: procs.Client, node: procs.Proc, seconds: float, services: int, actions: int
) -> Row:
    row = Row(f'load: {services} ask + {actions} ask_stream clients, 30 Hz camera')
    tally, samples = Tally(), Samples()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_service_loop, args=(client, deadline, tally, i), daemon=True)
        for i in range(services)
    ] + [
        threading.Thread(target=_action_loop, args=(client, deadline, tally, 100 + i), daemon=True)
        for i in range(actions)
    ]
    done = threading.Event()
    sampler = threading.Thread(
        target=_sample_until, args=(client, node.popen.pid, done.is_set, samples), daemon=True
    )
    sampler.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join(seconds + 2 * CALL_TIMEOUT_S)
        if th.is_alive():
            row.hangs += 1
            row.problems.append('a client thread did not finish (deadlock?)')
    done.set()
    sampler.join(5.0)
    _score_load(row, tally, samples, node, seconds)
    return row


def _score_load(
    row: Row, tally: Tally, samples: Samples, node: procs.Proc, seconds: float
) -> None:
    row.tried = tally.answered + tally.busy + tally.refused + tally.no_reason + tally.hangs
    row.hangs += tally.hangs
    row.problems += tally.hang_calls[:5]
    row.errors = tally.busy + tally.refused + tally.no_reason
    row.crashes = 0 if node.alive() else 1
    if tally.no_reason:
        row.fail(f'{tally.no_reason} refusals without a reason')
    for why in tally.problems:
        row.fail(f'refused for another reason than busy: {why}')
    if not samples.t:
        row.fail('no memory_status received during the load')
        return
    span = samples.t[-1] - samples.t[0]
    gap = samples.max_gap()
    if gap > STALL_S:
        row.fail(f'ingest stalled for {gap:.1f} s')
    growth = samples.rss[-1] - samples.rss[0]
    if growth > RSS_BOUND_BYTES:
        row.fail(f'node RSS grew {growth / 1e6:.0f} MB during the load')
    ingest_hz = (samples.ingested[-1] - samples.ingested[0]) / max(span, 1e-9)
    recv_hz = (samples.received[-1] - samples.received[0]) / max(span, 1e-9)
    lat = tally.latencies
    row.notes = (
        f'{seconds:.0f} s: {tally.answered} answered, {tally.busy} busy; latency p50 '
        f'{_percentile(lat, 50):.2f} s p99 {_percentile(lat, 99):.2f} s; ingest '
        f'{ingest_hz:.2f} Hz (target {INGEST_HZ}), received {recv_hz:.1f} Hz, longest '
        f'ingest gap {gap:.1f} s, dropped {samples.dropped[-1] - samples.dropped[0]}; node RSS '
        f'{samples.rss[0] / 1e6:.0f} -> {samples.rss[-1] / 1e6:.0f} MB '
        f'(max {max(samples.rss) / 1e6:.0f})'
    )
    row.figures = {
        'answered': tally.answered,
        'busy': tally.busy,
        'latency_p50_s': _percentile(lat, 50),
        'latency_p99_s': _percentile(lat, 99),
        'ingest_hz': ingest_hz,
        'received_hz': recv_hz,
        'max_ingest_gap_s': gap,
        'rss_start': samples.rss[0],
        'rss_end': samples.rss[-1],
        'rss_max': max(samples.rss),
    }


def camera(domain: int, folder: Path, n: int) -> procs.Proc:
    return procs.start_camera(
        domain, folder / f'camera{n}.log', width=640, height=480, rate_hz=30.0, topic=TOPIC
    )


def _ingested(client: procs.Client) -> int:
    s = client.latest(STATUS)
    return int(s.frames_ingested) if s is not None else 0


def camera_restarts(
    client: procs.Client, node: procs.Proc, cam: procs.Proc, domain: int, folder: Path, n: int
) -> tuple[Row, procs.Proc]:
    """Stop the camera (SIGINT, or SIGKILL every other time) and restart it ``n`` times."""
    row = Row('faults: camera stops and restarts')
    resumed_s = []
    for i in range(n):
        row.tried += 1
        sig = signal.SIGKILL if i % 2 else signal.SIGINT
        cam.stop(sig)
        row.kills += sig == signal.SIGKILL
        time.sleep(2.0)
        idle = _ingested(client)
        time.sleep(2.0)
        if _ingested(client) > idle + 1:
            row.fail('frames still ingested two seconds after the camera stopped')
        cam = camera(domain, folder, i + 1)
        t0 = time.monotonic()
        base = _ingested(client)
        if procs.wait_for(lambda: _ingested(client) >= base + 2, 60.0):  # noqa: B023
            resumed_s.append(time.monotonic() - t0)
        else:
            row.fail(f'ingest did not resume after restart {i + 1}')
    row.crashes = 0 if node.alive() else 1
    worst = max(resumed_s) if resumed_s else float('nan')
    row.notes = f'ingest resumed after every restart (slowest {worst:.1f} s, incl. camera start)'
    return row, cam


def run(
    folder: Path,
    domain: int,
    cache_dir: str,
    seconds: float,
    restarts: int,
    services: int = 4,
    actions: int = 2,
    overrides: dict[str, object] | None = None,
    burst: int = 0,
) -> list[Row]:
    """Load rows: the mixed clients, then (``burst`` > 0) that many ask clients at once."""
    params = procs.write_params(
        folder / 'load.yaml',
        {
            'model.cache_dir': cache_dir,
            'model.device': 'cpu',
            'engine.ingest_rate_hz': INGEST_HZ,
            'generation.max_new_tokens': 16,
            'ros.status_period_s': 0.25,
            **(overrides or {}),
        },
    )
    node = procs.start_node(
        params, domain, folder / 'node_load.log', NAMESPACE, 'flash_vstream_ros.ros.node'
    )
    cam = camera(domain, folder, 0)
    client = procs.Client(domain, 'reliability_load_client')
    client.keep_latest(MemoryStatus, STATUS)
    try:
        ready = procs.wait_for(
            lambda: (s := client.latest(STATUS)) is not None and s.frames_ingested >= 3, 180.0
        )
        if not ready:
            return [
                Row(
                    'load: start',
                    crashes=int(not node.alive()),
                    hangs=1,
                    notes=f'no frames ingested; see {folder}',
                )
            ]
        rows = [load_row(client, node, seconds, services, actions)]
        if burst:  # more clients than a default service queue (10) holds
            rows.append(load_row(client, node, max(10.0, seconds / 2), burst, 0))
        restart_row, cam = camera_restarts(client, node, cam, domain, folder, restarts)
        rows.append(restart_row)
        return rows
    finally:
        client.close()
        cam.stop()
        node.stop()
