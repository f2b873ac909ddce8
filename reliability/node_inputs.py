"""Bad input published to a running node and asked through its service and action.

One node (the tiny model, namespace /rel, reliable camera QoS so that no message is lost on
the way and the counters can be compared exactly) runs as ``reliability.faulty_node``: the real
node whose model runs out of memory on questions holding TRIGGER_OOM. The suite publishes
malformed Image and CompressedImage messages (and valid ones between them), asks every kind of
bad question through ``~/ask`` and ``~/ask_stream``, injects model failures, and starts a second
node with the same name and namespace. The node must stay alive, answer every call within a
timeout, refuse every bad request with a reason, and count exactly the images it rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
import time
from typing import Any

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.errors import BadFrameError
from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.ros.stamps import to_seconds
from flash_vstream_ros.srv import Ask
from reliability import converter, procs
from reliability.image_cases import Case, compressed_cases, image_cases, valid_image
from reliability.question_cases import QCase, fill, fixed_cases, random_cases
from reliability.report import Row

NAMESPACE = '/rel'
NODE = f'{NAMESPACE}/flash_vstream'
STATUS = f'{NODE}/memory_status'
CAMERA = 'fuzz_image'
CALL_TIMEOUT_S = 60.0
START_TIMEOUT_S = 180.0
TWIN_WARNING = 'other node(s) named'  # what the node logs while a twin runs


@dataclass
class NodeRun:
    """The running node and the suite's client."""

    node: procs.Proc
    client: procs.Client
    ask: Any
    stream: Any

    def status(self) -> Any:
        return self.client.latest(STATUS)

    def wait_status(self, check: Any, timeout: float) -> bool:
        return procs.wait_for(lambda: (s := self.status()) is not None and check(s), timeout)


def node_params(folder: Path, cache_dir: str) -> Path:
    return procs.write_params(
        folder / 'inputs.yaml',
        {
            'model.cache_dir': cache_dir,
            'model.device': 'cpu',
            'engine.ingest_rate_hz': 0.0,
            'engine.frame_queue_size': 64,
            'generation.max_new_tokens': 8,
            'ros.image_topics': ['fuzz/image'],
            'ros.compressed_topics': ['fuzz/compressed'],
            'ros.qos_reliability': 'reliable',
            'ros.qos_depth': 1000,
            'ros.status_period_s': 0.2,
            'ros.warn_throttle_s': 2.0,
        },
    )


def start(folder: Path, domain: int, cache_dir: str) -> NodeRun | None:
    params = node_params(folder, cache_dir)
    node = procs.start_node(
        params, domain, folder / 'node_inputs.log', NAMESPACE, 'reliability.faulty_node'
    )
    client = procs.Client(domain)
    client.keep_latest(MemoryStatus, STATUS)
    run = NodeRun(node, client, client.service(Ask, f'{NODE}/ask'), None)
    run.stream = client.action(AskStream, f'{NODE}/ask_stream')
    if not run.wait_status(lambda s: s.state == 'active', START_TIMEOUT_S):
        run.client.close()
        run.node.stop()
        return None
    return run


def _rejected_here(case: Case) -> bool:
    """Whether the converter rejects this message (the node must count exactly these)."""
    try:
        converter.convert(case)
    except BadFrameError:
        return True
    except Exception:  # the node's catch-all rejects these too (and the converter row fails)
        return True
    return False


def publish_images(run: NodeRun, cases: Iterable[Case], name: str) -> Row:
    """Publish ``cases``; the node's frames_rejected must grow by exactly the bad ones."""
    row = Row(name)
    pubs = {
        'image': run.client.publisher(Image, f'{NAMESPACE}/fuzz/image'),
        'compressed': run.client.publisher(CompressedImage, f'{NAMESPACE}/fuzz/compressed'),
    }
    procs.wait_for(lambda: all(p.get_subscription_count() for p in pubs.values()), 30.0)
    before = run.status()
    sent = bad = 0
    for case in cases:
        bad += _rejected_here(case)
        pubs[case.kind.split('/')[0]].publish(case.msg)
        sent += 1
        if sent % 50 == 0:  # stay well inside the subscription's queue depth
            floor = before.frames_received + sent - 200
            run.wait_status(lambda s, floor=floor: s.frames_received >= floor, 30.0)
    got = run.wait_status(
        lambda s: (
            s.frames_received >= before.frames_received + sent
            and s.frames_ingested + s.frames_rejected + s.frames_dropped_queue
            >= before.frames_ingested + before.frames_rejected + before.frames_dropped_queue + sent
        ),
        60.0,
    )
    time.sleep(0.5)  # one more status period
    after = run.status()
    row.tried = sent
    row.errors = after.frames_rejected - before.frames_rejected
    if not got:
        row.hangs += 1
        row.problems.append(
            f'node received {after.frames_received - before.frames_received} of {sent}'
        )
    if row.errors != bad:
        row.fail(f'frames_rejected grew by {row.errors}; {bad} of the messages are malformed')
    if not run.node.alive():
        row.crashes += 1
    row.notes = (
        f'{bad} malformed; node counted {row.errors} rejected, '
        f'{after.frames_ingested - before.frames_ingested} ingested'
    )
    return row


def seed_memory(run: NodeRun, rng: np.random.Generator) -> float:
    """Publish a few valid frames; returns the newest memory stamp (seconds)."""
    pub = run.client.publisher(Image, f'{NAMESPACE}/fuzz/image')
    procs.wait_for(lambda: pub.get_subscription_count() > 0, 30.0)
    for _ in range(6):
        pub.publish(valid_image(rng, 'rgb8'))
        time.sleep(0.05)
    run.wait_status(lambda s: s.frames_ingested >= 6, 60.0)
    return to_seconds(run.status().newest_stamp)


def _score(row: Row, case: QCase, outcome: str, result: Any) -> None:
    row.tried += 1
    if outcome == 'hang':
        row.hangs += 1
        row.problems.append(f'{case.kind}: no answer within {CALL_TIMEOUT_S:.0f} s')
        return
    if outcome == 'rejected':  # a goal refused by the server (busy): not expected here
        row.fail(f'{case.kind}: goal rejected')
        return
    if result.success:
        if case.expect == 'bad':
            row.fail(f'{case.kind}: bad request answered: {str(case.fields)[:120]}')
        return
    row.errors += 1
    if not result.error_message.strip():
        row.fail(f'{case.kind}: success=false without a reason')
    if case.expect == 'ok':
        row.fail(f'{case.kind}: valid request refused: {result.error_message[:200]}')


def ask_cases(run: NodeRun, cases: Iterable[QCase], action: bool, name: str) -> Row:
    row = Row(name)
    if not run.ask.wait_for_service(timeout_sec=30.0):
        row.hangs += 1
        return row
    if action and not run.stream.wait_for_server(timeout_sec=30.0):
        row.hangs += 1
        return row
    t0 = time.monotonic()
    for case in cases:
        if action:
            outcome, result = procs.ask_action(
                run.client, run.stream, fill(AskStream.Goal(), case.fields), CALL_TIMEOUT_S
            )
        else:
            result = procs.call(run.ask, fill(Ask.Request(), case.fields), CALL_TIMEOUT_S)
            outcome = 'hang' if result is None else 'done'
        _score(row, case, outcome, result)
    if not run.node.alive():
        row.crashes += 1
    row.notes = f'{row.tried / max(time.monotonic() - t0, 1e-9):.1f} calls/s'
    return row


def model_oom(run: NodeRun, rounds: int) -> Row:
    """Questions whose generation runs out of memory, each followed by a normal question."""
    row = Row('faults: model OOM in the node')
    for i in range(rounds):
        row.tried += 1
        bad = fill(Ask.Request(), {'question': 'TRIGGER_OOM: what is there?'})
        good = fill(Ask.Request(), {'question': 'What is there?'})
        if i % 2:
            status, res = procs.ask_action(
                run.client,
                run.stream,
                fill(AskStream.Goal(), {'question': bad.question}),
                CALL_TIMEOUT_S,
            )
            res = None if status == 'hang' else res
        else:
            res = procs.call(run.ask, bad, CALL_TIMEOUT_S)
        if res is None:
            row.hangs += 1
            continue
        if res.success or 'out of memory' not in res.error_message:
            row.fail(f'OOM reported as success={res.success}: {res.error_message!r}')
        else:
            row.errors += 1
        nxt = procs.call(run.ask, good, CALL_TIMEOUT_S)
        if nxt is None:
            row.hangs += 1
        elif not nxt.success:
            row.fail(f'question after an OOM refused: {nxt.error_message}')
    if not run.node.alive():
        row.crashes += 1
    row.notes = 'each OOM answered success=false "out of memory", the next question answered'
    return row


def _graph_count(client: procs.Client) -> int:
    names = client.node.get_node_names_and_namespaces()
    return sum(1 for name, ns in names if name == 'flash_vstream' and ns == NAMESPACE)


def duplicate_node(run: NodeRun, folder: Path, domain: int, cache_dir: str) -> Row:
    """A second node with the same name and namespace: what ROS does, and that both live."""
    row = Row('faults: duplicate node name')
    params = node_params(folder, cache_dir)
    twin = procs.start_node(
        params, domain, folder / 'node_twin.log', NAMESPACE, 'flash_vstream_ros.ros.node'
    )
    try:
        seen = procs.wait_for(lambda: _graph_count(run.client) >= 2, 60.0)
        procs.wait_for(lambda: "camera '" in twin.text() or not twin.alive(), START_TIMEOUT_S)
        answered = empty = 0
        for _ in range(6):
            row.tried += 1
            res = procs.call(run.ask, fill(Ask.Request(), {'question': 'what?'}), CALL_TIMEOUT_S)
            if res is None:
                row.hangs += 1
            elif res.success:
                answered += 1
            else:
                row.errors += 1
                empty += 'memory is empty' in res.error_message
        procs.wait_for(lambda: TWIN_WARNING in run.node.text() + twin.text(), 10.0)
        warned = [
            line.strip()[:160]
            for line in twin.text().splitlines() + run.node.text().splitlines()
            if TWIN_WARNING in line
        ]
        if not warned:
            row.fail('neither node warned about the other one with its name')
        both = run.node.alive() and twin.alive()
        if not run.node.alive():
            row.crashes += 1
        row.notes = (
            f'graph lists {NODE} {_graph_count(run.client)}x (seen twice: {seen}); both alive: '
            f'{both}; {answered}/6 asks answered, {empty} refused by the empty twin '
            f'(a client takes the first response); warned: {bool(warned)}'
        )
        row.figures = {'warnings': warned}
    finally:
        twin.stop()
    if not run.node.alive():
        row.crashes += 1
    return row


def run(
    folder: Path,
    domain: int,
    cache_dir: str,
    n_images: int,
    n_compressed: int,
    n_questions: int,
    seed: int = 0,
) -> list[Row]:
    rng = np.random.default_rng(seed)
    node_run = start(folder, domain, cache_dir)
    if node_run is None:
        row = Row('node: start', crashes=1, notes=f'node did not become active; see {folder}')
        return [row]
    try:
        newest = seed_memory(node_run, rng)
        rows = [
            publish_images(
                node_run, image_cases(rng, n_images), 'node: malformed Image (published)'
            ),
            publish_images(
                node_run,
                compressed_cases(rng, n_compressed),
                'node: corrupt CompressedImage (published)',
            ),
        ]
        fixed = fixed_cases(newest, CAMERA)
        rand = list(random_cases(rng, n_questions, newest, CAMERA))
        rows.append(ask_cases(node_run, fixed + rand, False, 'node: questions via ~/ask'))
        few = rand[: max(1, n_questions // 3)]
        rows.append(ask_cases(node_run, fixed + few, True, 'node: questions via ~/ask_stream'))
        rows.append(model_oom(node_run, 4))
        rows.append(duplicate_node(node_run, folder, domain, cache_dir))
        return rows
    finally:
        node_run.client.close()
        node_run.node.stop()
