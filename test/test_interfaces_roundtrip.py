"""Every service and the action, round-tripped between two processes with the generated types.

A test-only server (test/ros_helpers/interfaces_server.py) and a client
(test/ros_helpers/interfaces_client.py) run as separate processes with ``--ros-args``, their own
ROS_DOMAIN_ID and loopback-only discovery; the client reports what it received as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys

import pytest

pytest.importorskip('rclpy')
from flash_vstream_ros.srv import Ask

pytestmark = pytest.mark.ros

HELPERS = Path(__file__).resolve().parent / 'ros_helpers'
REPO_ROOT = HELPERS.parents[1]
DOMAIN_ID = '60'  # the packaging tests' range is 60-64
NAMESPACE = '/fvs_rt'
SERVER = f'{NAMESPACE}/server'
STATUS_SUCCEEDED = 4  # action_msgs/GoalStatus
STATUS_CANCELED = 5


def ros_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1'
    )
    env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get('PYTHONPATH')]))
    return env


@pytest.fixture(scope='module')
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    log = tmp_path_factory.mktemp('roundtrip') / 'server.log'
    with log.open('w') as out:
        server = subprocess.Popen(
            [
                sys.executable,
                str(HELPERS / 'interfaces_server.py'),
                '--ros-args',
                '-r',
                '__node:=server',
                '-r',
                f'__ns:={NAMESPACE}',
            ],
            env=ros_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            client = subprocess.run(
                [
                    sys.executable,
                    str(HELPERS / 'interfaces_client.py'),
                    '--ros-args',
                    '-p',
                    f'server:={SERVER}',
                ],
                env=ros_env(),
                capture_output=True,
                text=True,
                timeout=180,
            )
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    assert client.returncode == 0, (
        f'client failed ({client.returncode}):\n{client.stdout}\n{client.stderr}\n'
        f'server log:\n{log.read_text()}'
    )
    return json.loads(client.stdout.strip().splitlines()[-1])


def test_ask_service_round_trips_every_field(report: dict) -> None:
    ask = report['ask']
    assert ask['success'] is True
    assert Ask.Response().success is False  # the generated type's default
    assert ask['answer'] == 'echo: where is the red toolbox'
    assert ask['evidence'] == [['front', 100, 5, 200, 1.0], ['rear', 100, 5, 200, 2.0]]
    assert (ask['answer_tokens'], ask['visual_tokens']) == (5, 32)
    assert ask['latency_s'] == pytest.approx(12.5)
    assert ask['stop_reason'] == 'eos'
    assert ask['memory_cameras'] == ['front']
    assert ask['memory_part_used'] == [64, 400]


def test_ask_service_reports_a_bad_request_without_failing(report: dict) -> None:
    assert report['ask']['bad_success'] is False
    assert report['ask']['bad_error'] == 'question is empty'


def test_memory_file_and_trigger_services(report: dict) -> None:
    files = report['files']
    assert files['save'] == [True, 'saved /tmp/m.fvs', '/tmp/m.fvs', 7, len('/tmp/m.fvs')]
    assert files['load'] == [True, 'loaded /tmp/m.fvs']
    assert files['reset'] == [True, 'reset 1']


def test_ask_stream_action_streams_feedback(report: dict) -> None:
    stream = report['stream']
    assert stream['accepted'] is True
    assert stream['status'] == STATUS_SUCCEEDED
    assert stream['answer'] == 'one two three four'
    assert stream['answer_tokens'] == 4
    # Feedback is reliable but DDS keeps none for a subscriber matched late: the server waits
    # for one (up to 1 s), and every piece that arrives must be the right one, in order; the
    # last one always arrives before the result is asked for.
    words = ['one', 'two', 'three', 'four']
    expected = [[w, ' '.join(words[: i + 1]), i + 1] for i, w in enumerate(words)]
    got = stream['feedback']
    assert got
    assert got == [e for e in expected if e in got]
    assert got[-1] == expected[-1]


def test_ask_stream_action_rejects_and_cancels(report: dict) -> None:
    assert report['rejected'] == {'accepted': False}
    cancelled = report['cancelled']
    assert cancelled['status'] == STATUS_CANCELED
    assert cancelled['stop_reason'] == 'cancelled'
    assert 2 <= cancelled['answer_tokens'] < 200
    assert cancelled['answer'] == ' '.join(['word'] * cancelled['answer_tokens'])
