"""The node in this process on the fake model: live parameters, goal admission, dead clients.

A FlashVStreamNode spins on a background executor with an Engine on _engine_fakes' FakeModel
(answers 'w0 w1 ...', one token per word, optionally slowed per token), so answers are quick
and their token counts exact. The test's Client joins from its own context, as a remote caller
would. The node lives in its own namespace and domain: other test runs on the machine do not
see it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
import math
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from _engine_fakes import FakeModel, fake_build_memory
import numpy as np
import pytest
from rcl_interfaces.msg import Log
import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.config import AppConfig
from flash_vstream_ros.engine import Engine
from flash_vstream_ros.ros.node import FlashVStreamNode
from flash_vstream_ros.ros.procs import PROFILE, Proc, ros_env
from flash_vstream_ros.srv import Ask

from _ros_node_helpers import Client, result_of, wait_for  # isort: skip

pytestmark = pytest.mark.ros

DOMAIN_ID = 86
NAMESPACE = 'live_test'
NODE = f'/{NAMESPACE}/flash_vstream'
HELPERS = Path(__file__).resolve().parent / 'ros_helpers'


@dataclass
class Live:
    node: FlashVStreamNode
    engine: Engine
    model: FakeModel
    client: Client


@pytest.fixture(scope='module')
def live() -> Iterator[Live]:
    ctx = Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    model = FakeModel()
    engines: list[Engine] = []

    def factory(config: AppConfig) -> Engine:
        engines.append(Engine(config, model, memory_factory=fake_build_memory))
        return engines[-1]

    overrides = [
        Parameter('ros.autostart', value=False),
        Parameter('engine.ingest_rate_hz', value=0.0),
        Parameter('engine.question_queue_size', value=1),
    ]
    node = FlashVStreamNode(
        factory, context=ctx, namespace=NAMESPACE, parameter_overrides=overrides
    )
    executor = MultiThreadedExecutor(num_threads=8, context=ctx)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    try:
        assert node.start()
        engine = engines[-1]
        for i in range(3):
            engine.submit_frame(np.full((12, 16, 3), 40 * i, np.uint8), i * 10**9, 'cam')
        assert engine.wait_idle(10.0)
        thread.start()
        client = Client(DOMAIN_ID, 'live_client')
        try:
            yield Live(node, engine, model, client)
        finally:
            client.close()
    finally:
        executor.shutdown()
        node.close()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        thread.join(5.0)


@contextmanager
def action_client(live: Live) -> Iterator[ActionClient]:
    """An action client of the node, destroyed afterwards: a client left behind would keep
    the node from telling that a later goal's client is gone (ros/client_watch.py)."""
    action = live.client.on_executor(
        lambda: ActionClient(live.client.node, AskStream, f'{NODE}/ask_stream')
    )
    try:
        assert action.wait_for_server(timeout_sec=30.0)
        yield action
    finally:
        live.client.on_executor(action.destroy)


def ask(live: Live, question: str = 'what?', **fields: Any) -> Any:
    request = Ask.Request(question=question, temperature=-1.0)
    for name, value in fields.items():
        setattr(request, name, value)
    return live.client.call(Ask, f'{NODE}/ask', request)


def set_param(live: Live, name: str, value: Any) -> Any:
    return live.node.set_parameters([Parameter(name, value=value)])[0]


def test_generation_parameters_apply_to_the_next_answer(live: Live) -> None:
    first = ask(live)
    assert first.success, first.error_message
    assert first.answer_tokens == 128  # generation.max_new_tokens's default
    assert set_param(live, 'generation.max_new_tokens', 5).successful
    assert set_param(live, 'generation.temperature', 0.7).successful
    assert set_param(live, 'generation.top_p', 0.9).successful
    answer = ask(live)
    assert answer.success, answer.error_message
    assert answer.answer_tokens == 5
    request = live.model.last_request
    assert request is not None
    assert (request.max_new_tokens, request.temperature, request.top_p) == (5, 0.7, 0.9)
    assert set_param(live, 'generation.max_question_chars', 3).successful
    refused = ask(live, 'what?')
    assert not refused.success
    assert 'the limit is 3' in refused.error_message
    assert set_param(live, 'generation.max_question_chars', 2000).successful


@pytest.mark.parametrize(
    ('name', 'value'),
    [
        ('generation.max_new_tokens', -1),
        ('generation.max_new_tokens', 0),
        ('generation.temperature', math.nan),
        ('generation.temperature', 5e-324),
        ('generation.temperature', 1e-300),
        ('generation.top_p', 1.5),
    ],
)
def test_invalid_generation_values_are_refused_and_nothing_changes(
    live: Live, name: str, value: Any
) -> None:
    assert set_param(live, 'generation.max_new_tokens', 5).successful
    before_param = live.node.get_parameter(name).value
    before = live.engine.config.generation
    result = set_param(live, name, value)
    assert not result.successful
    assert result.reason
    assert live.node.get_parameter(name).value == before_param
    assert live.engine.config.generation == before
    assert ask(live).answer_tokens == 5


def test_goals_are_rejected_while_questions_from_ask_fill_the_queue(live: Live) -> None:
    """engine.question_queue_size=1: one ~/ask answered and one waiting fill the engine, so a
    goal is rejected when it arrives (not accepted, then aborted busy)."""
    with action_client(live) as action:
        assert set_param(live, 'generation.max_new_tokens', 200).successful
        live.model.token_delay_s = 0.02  # each answer takes about 4 s
        answers: list[Any] = []
        askers = [threading.Thread(target=lambda: answers.append(ask(live))) for _ in range(2)]
        try:
            for asker in askers:
                asker.start()
            gate = live.engine._gate
            wait_for(lambda: gate.active and gate.waiting == 1, 30.0, 'one answered, one waiting')
            handle = result_of(
                live.client.send_goal(action, AskStream.Goal(question='and now?')),
                30.0,
                'goal response',
            )
            assert not handle.accepted
        finally:
            for asker in askers:
                asker.join(60.0)
            live.model.token_delay_s = 0.0
        assert [a.success for a in answers] == [True, True]
        assert set_param(live, 'generation.max_new_tokens', 5).successful
        handle = result_of(
            live.client.send_goal(action, AskStream.Goal(question='now?')), 30.0, 'goal response'
        )
        assert handle.accepted
        response = result_of(handle.get_result_async(), 30.0, 'result')
        assert response.result.success, response.result.error_message


def short_lease_profile(path: Path) -> Path:
    """The loopback profile with a 2 s participant lease: DDS drops a killed client's
    participant 2 s after its last announcement instead of Fast DDS' default 20 s."""
    lease = (
        '<builtin>\n<discovery_config>'
        '<leaseDuration><sec>2</sec><nanosec>0</nanosec></leaseDuration>'
        '<leaseAnnouncement><sec>0</sec><nanosec>500000000</nanosec></leaseAnnouncement>'
        '</discovery_config>'
    )
    path.write_text(PROFILE.read_text().replace('<builtin>', lease, 1))
    return path


def start_long_goal_client(tmp_path: Path) -> Proc:
    env = ros_env(DOMAIN_ID)
    env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(short_lease_profile(tmp_path / 'lease.xml'))
    log = tmp_path / 'client.log'
    args = [sys.executable, str(HELPERS / 'long_goal_client.py'), f'{NODE}/ask_stream']
    with log.open('wb') as out:
        popen = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Proc(popen, log)


def test_a_killed_clients_goal_stops_and_frees_the_model(live: Live, tmp_path: Path) -> None:
    """The goal would take 4096 tokens x 0.05 s = 205 s; once the client is killed (SIGKILL,
    by PID) the node notices it within the client's 2 s lease, stops the answer and logs why,
    and the next question is answered at once. Another action client that appeared after the
    goal started does not hide the death."""
    live.client.subscribe(Log, '/rosout')
    feedback = f'{NODE}/ask_stream/_action/feedback'
    # The killed client must be the only possible sender (ros/client_watch.py): no other one.
    wait_for(lambda: live.node.count_subscribers(feedback) == 0, 30.0, 'no other action client')
    assert set_param(live, 'generation.max_new_tokens', 4096).successful
    live.model.token_delay_s = 0.05
    client = start_long_goal_client(tmp_path)
    try:
        wait_for(lambda: 'feedback' in client.text(), 60.0, f'feedback: {client.text()}')
        with action_client(live):  # a client that came later cannot have sent the goal
            killed = time.monotonic()
            assert client.stop(signal.SIGKILL) == -signal.SIGKILL
            wait_for(lambda: bool(gone_logs(live)), 60.0, 'the node saying the client is gone')
            answer = ask(live, max_new_tokens=2)
            waited = time.monotonic() - killed
    finally:
        client.stop(signal.SIGKILL)
        live.model.token_delay_s = 0.0
    assert answer.success, answer.error_message
    assert waited < 60.0  # far below the 205 s the goal would have held the model
    assert 'stopping the answer to free the model' in gone_logs(live)[0]
    assert live.engine.questions_in_flight() == 0


def gone_logs(live: Live) -> list[str]:
    return [m.msg for m in live.client.messages('/rosout') if 'client is gone' in m.msg]
