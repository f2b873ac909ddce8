"""Two hosts over ROS 2: the node on a "robot", questions from a "base station".

Each host is a network namespace this test creates, joined by a veth pair whose two
addresses the test assigns (a private /30 that exists only inside these namespaces: nothing
is routed out of them, nothing leaves the machine). Inside them DDS runs as between two
machines: ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` (multicast discovery over the veth) and
UDP only (``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``: no shared-memory shortcut through the common
/dev/shm). The robot runs the node and the synthetic camera; the base station's client sees
the node's status topic, calls ``~/ask`` and streams ``~/ask_stream``. The packet counters of
the veth show the traffic crossed it. Needs root and ``ip`` (skipped otherwise); the
namespaces are deleted by name at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

from flash_vstream_ros.ros.procs import SOURCE_ROOT, Proc, ros_env, write_params

pytestmark = pytest.mark.ros

DOMAIN_ID = 57
TAG = f'fvs{os.getpid() % 100000}'
ROBOT, BASE = f'{TAG}_robot', f'{TAG}_base'
ROBOT_IF, BASE_IF = f'{TAG}r', f'{TAG}b'  # interface names (15 characters at most)
ROBOT_IP, BASE_IP = '10.213.57.1', '10.213.57.2'  # only inside the two namespaces
CLIENT = Path(__file__).resolve().parent / 'ros_helpers' / 'base_station_client.py'


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(['ip', *args], capture_output=True, text=True, timeout=30, check=False)


def can_make_namespaces() -> str:
    """'' when this test can run; otherwise why not."""
    if os.geteuid() != 0:
        return 'needs root (network namespaces)'
    if shutil.which('ip') is None:
        return 'needs the ip command (iproute2)'
    probe = f'{TAG}_probe'
    made = ip('netns', 'add', probe)
    if made.returncode != 0:
        return f'cannot create a network namespace: {made.stderr.strip()}'
    ip('netns', 'del', probe)
    return ''


def must(*args: str) -> None:
    done = ip(*args)
    assert done.returncode == 0, f'ip {" ".join(args)}: {done.stderr}'


@pytest.fixture(scope='module')
def hosts() -> Iterator[None]:
    reason = can_make_namespaces()
    if reason:
        pytest.skip(reason)
    try:
        must('netns', 'add', ROBOT)
        must('netns', 'add', BASE)
        must('link', 'add', ROBOT_IF, 'type', 'veth', 'peer', 'name', BASE_IF)
        must('link', 'set', ROBOT_IF, 'netns', ROBOT)
        must('link', 'set', BASE_IF, 'netns', BASE)
        for ns, dev, addr in ((ROBOT, ROBOT_IF, ROBOT_IP), (BASE, BASE_IF, BASE_IP)):
            must('-n', ns, 'addr', 'add', f'{addr}/30', 'dev', dev)
            must('-n', ns, 'link', 'set', 'lo', 'up')
            must('-n', ns, 'link', 'set', dev, 'up', 'multicast', 'on')
            must('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', dev)
        yield
    finally:
        for ns in (ROBOT, BASE):  # deleting a namespace deletes its end of the veth
            ip('netns', 'del', ns)


def host_env() -> dict[str, str]:
    """ros_env, made for two machines: subnet discovery, UDP only, no loopback profile."""
    env = ros_env(DOMAIN_ID, big_images=False)
    env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    env.pop('ROS_STATIC_PEERS', None)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SUBNET'
    env['FASTDDS_BUILTIN_TRANSPORTS'] = 'UDPv4'
    return env


def start_in(ns: str, args: list[str], log: Path) -> Proc:
    """``args`` inside namespace ``ns`` (``ip netns exec`` execs them: the PID is theirs)."""
    with log.open('wb') as out:
        popen = subprocess.Popen(
            ['ip', 'netns', 'exec', ns, *args],
            cwd=SOURCE_ROOT,
            env=host_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Proc(popen, log)


def packets(ns: str, dev: str) -> int:
    done = ip('-n', ns, '-s', '-j', 'link', 'show', dev)
    stats = json.loads(done.stdout)[0]['stats64']
    return int(stats['rx']['packets']) + int(stats['tx']['packets'])


def test_node_on_the_robot_answers_the_base_station(
    hosts: None, tmp_path: Path, tiny_cache_dir: Path
) -> None:
    params = write_params(
        tmp_path / 'params.yaml',
        {
            'model.cache_dir': str(tiny_cache_dir),
            'model.device': 'cpu',
            'engine.ingest_rate_hz': 2.0,
            'ros.status_period_s': 0.5,
        },
    )
    node = start_in(
        ROBOT,
        [
            sys.executable,
            '-m',
            'flash_vstream_ros.ros.node',
            '--ros-args',
            '--params-file',
            str(params),
        ],
        tmp_path / 'node.log',
    )
    camera = start_in(
        ROBOT,
        [
            sys.executable,
            '-m',
            'flash_vstream_ros.ros.sim_camera',
            '--ros-args',
            '-p',
            'width:=64',
            '-p',
            'height:=48',
            '-p',
            'rate_hz:=5.0',
        ],
        tmp_path / 'camera.log',
    )
    try:
        before = packets(ROBOT, ROBOT_IF)
        client = subprocess.run(
            [
                'ip',
                'netns',
                'exec',
                BASE,
                sys.executable,
                str(CLIENT),
                '--ros-args',
                '-p',
                'node:=/flash_vstream',
                '-p',
                'wait_s:=240.0',
            ],
            cwd=SOURCE_ROOT,
            env=host_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        lines = client.stdout.strip().splitlines()
        report = json.loads(lines[-1]) if lines else {}
        where = (
            f'client: {client.stdout[-1500:]} {client.stderr[-1500:]}\n'
            f'node: {node.text()[-2500:]}\ncamera: {camera.text()[-800:]}'
        )
        assert 'error' not in report, where
        assert report['frames_ingested'] >= 2, where
        assert report['ask']['success'], report['ask']['error']
        assert report['ask']['answer_tokens'] > 0
        assert report['ask']['evidence'] > 0
        assert report['stream'] == {
            'accepted': True,
            'success': True,
            'feedback': report['stream']['feedback'],
        }
        assert report['stream']['feedback'] > 0
        assert packets(ROBOT, ROBOT_IF) - before > 20  # the traffic went over the veth
    finally:
        camera.stop(timeout=10.0)
        node.stop(timeout=20.0)
