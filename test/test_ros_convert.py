"""The node's pure helpers: message conversions, diagnostics, montage, throttle, client output."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
import numpy as np
import pytest

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.engine import Answer
from flash_vstream_ros.memory.base import Evidence, TimeWindow
from flash_vstream_ros.ros import (
    ask_client,
    compat,
    convert,
    diagnostics,
    logs,
    montage,
    stamps,
)
from flash_vstream_ros.srv import Ask

from _ros_node_helpers import engine_status  # isort: skip

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ('topic', 'namespace', 'camera'),
    [
        ('/image_raw', '/', 'image_raw'),
        ('/robot1/image_raw', '/robot1', 'image_raw'),
        ('/robot1/front/image_raw', '/robot1', 'front_image_raw'),
        ('/cam/left/image', '/robot1', 'cam_left_image'),
        ('/robot10/image', '/robot1', 'robot10_image'),
    ],
)
def test_camera_names(topic: str, namespace: str, camera: str) -> None:
    assert convert.camera_name(topic, namespace) == camera


@pytest.mark.parametrize('seconds', [0.5, 1.0, 1_795_831_940.756, 12.000000001])
def test_stamps_round_trip(seconds: float) -> None:
    assert stamps.to_seconds(stamps.to_time(seconds)) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize('seconds', [None, 0.0, -3.0, float('nan'), float('inf')])
def test_unset_stamps_are_zero(seconds: float | None) -> None:
    assert stamps.is_zero(stamps.to_time(seconds))


def test_request_to_question() -> None:
    request = Ask.Request(
        question='what?',
        window_start=Time(sec=10),
        window_last_s=30.0,
        cameras=['front'],
        max_new_tokens=7,
        temperature=-1.0,
    )
    q = convert.to_question(request)
    assert q.text == 'what?'
    assert q.window == TimeWindow(10 * 10**9, None)  # ns, exactly
    assert (q.last_s, q.cameras, q.max_new_tokens, q.temperature) == (30.0, ('front',), 7, None)
    assert convert.to_question(Ask.Request(question='x', temperature=0.0)).window is None
    assert convert.to_question(Ask.Request(question='x', temperature=0.0)).temperature == 0.0


def test_answer_fills_response_and_result_alike() -> None:
    ev = Evidence('temporal', 'front', 12_500_000_000, 10 * 10**9, 15 * 10**9, 3.0)
    answer = Answer(
        text='a box',
        evidence=(ev,),
        latency_s=0.25,
        answer_tokens=3,
        visual_tokens=144,
        stop_reason='eos',
        status=engine_status(),
    )
    for out in (Ask.Response(), AskStream.Result()):
        convert.fill_answer(out, answer, 'active')
        assert (out.success, out.answer, out.stop_reason) == (True, 'a box', 'eos')
        assert stamps.to_seconds(out.evidence[0].start) == 10.0
        assert out.evidence[0].weight == 3.0
        assert out.memory.state == 'active'
        assert list(out.memory.parts) == ['temporal', 'spatial']
        assert list(out.memory.part_used) == [80, 64]
        assert stamps.to_seconds(out.memory.newest_stamp) == 15.5


def test_failure_without_engine_has_only_the_state() -> None:
    out = convert.fill_failure(Ask.Response(), 'node is unconfigured', None, 'unconfigured')
    assert not out.success
    assert out.error_message == 'node is unconfigured'
    assert (out.memory.state, out.memory.model) == ('unconfigured', '')


def test_diagnostic_levels() -> None:
    prev = diagnostics.DiagnosticsState()
    stamp = Time(sec=5)
    first = diagnostics.diagnostic_array('n', engine_status(), 'active', '', prev, stamp)
    assert first.status[0].level == DiagnosticStatus.WARN  # 1 dropped, 1 rejected: new
    same = diagnostics.diagnostic_array('n', engine_status(), 'active', '', prev, stamp)
    assert same.status[0].level == DiagnosticStatus.OK
    values = {kv.key: kv.value for kv in same.status[0].values}
    assert values['frames ingested'] == '10'
    assert values['fill temporal'] == '80/400'
    inactive = diagnostics.diagnostic_array('n', engine_status(), 'inactive', '', prev, stamp)
    assert inactive.status[0].level == DiagnosticStatus.WARN
    failed = diagnostics.diagnostic_array('n', None, 'unconfigured', 'bad path', prev, stamp)
    assert failed.status[0].level == DiagnosticStatus.ERROR
    assert 'bad path' in failed.status[0].message
    assert failed.status[0].name == 'n: memory'


def test_montage_tiles_and_letterboxes() -> None:
    wide = np.full((48, 96, 3), 200, np.uint8)
    tall = np.full((96, 40, 3), 100, np.uint8)
    grid = montage.montage([('a', 1.0, wide), ('b', 2.0, tall), ('c', 3.0, wide)])
    assert grid.shape == (2 * (montage.TILE + montage.LABEL), 2 * montage.TILE, 3)
    assert grid.dtype == np.uint8
    assert grid[montage.TILE // 2, montage.TILE // 2, 0] == 200  # centre of the first tile
    assert grid[0, montage.TILE // 2, 0] == 0  # letterbox above the wide frame
    assert montage.montage([]).shape == (montage.TILE + montage.LABEL, montage.TILE, 3)


def test_throttle_counts_what_it_holds_back() -> None:
    throttle = logs.Throttle()
    assert throttle.check('k', 5.0, now=0.0) == 0
    assert throttle.check('k', 5.0, now=1.0) is None
    assert throttle.check('k', 5.0, now=2.0) is None
    assert throttle.check('other', 5.0, now=2.0) == 0
    assert throttle.check('k', 5.0, now=5.5) == 2


def test_core_logging_reaches_the_node_logger() -> None:
    seen: list[tuple[str, str]] = []

    class Recorder:
        def info(self, text: str) -> None:
            seen.append(('info', text))

        def warning(self, text: str) -> None:
            seen.append(('warning', text))

        def error(self, text: str) -> None:
            seen.append(('error', text))

        def debug(self, text: str) -> None:
            seen.append(('debug', text))

    handler = logs.bridge_core_logging(Recorder())
    try:
        logging.getLogger('flash_vstream_ros.engine').warning('queue full (%d)', 3)
        logging.getLogger('other.library').warning('not ours')
    finally:
        logs.unbridge_core_logging(handler)
    assert seen == [('warning', '[flash_vstream_ros.engine] queue full (3)')]


def test_client_request_and_summary() -> None:
    args = ask_client.parse_args(
        ['what?', '--window-last', '60', '--camera', 'front', '--max-tokens', '9', '--service']
    )
    assert isinstance(args, argparse.Namespace)
    goal = ask_client.fill_request(AskStream.Goal(), args)
    assert (goal.question, goal.window_last_s, list(goal.cameras)) == ('what?', 60.0, ['front'])
    assert goal.max_new_tokens == 9
    assert goal.temperature < 0
    assert args.use_service
    evidence = (
        Evidence('temporal', 'front', 12 * 10**9, 10 * 10**9, 14 * 10**9, 4.0),
        Evidence('spatial', 'front', 15 * 10**9, 15 * 10**9, 15 * 10**9, 1.0),
    )
    answer = Answer(
        text='x',
        evidence=evidence,
        latency_s=1.5,
        answer_tokens=1,
        visual_tokens=80,
        stop_reason='length',
        status=engine_status(),
    )
    result = convert.fill_answer(AskStream.Result(), answer, 'active')
    text = '\n'.join(ask_client.summary_lines(result))
    assert 'latency: 1.50 s' in text
    assert 'temporal    1 elements for 4 frames, t=10.00 s .. t=14.00 s [front]' in text
    assert 'spatial     1 frames at t=15.00 s [front]' in text
    assert '100 received, 10 ingested, 88 skipped (rate), 1 dropped (queue), 1 rejected' in text


def test_client_shows_wall_clock_stamps_as_utc_time_of_day() -> None:
    assert ask_client.fmt_stamp(1795834847.59) == '03:00:47.59'  # 2026-11-28 03:00:47 UTC
    assert ask_client.fmt_stamp(12.5) == 't=12.50 s'  # sim time


def test_client_needs_a_question_or_status() -> None:
    with pytest.raises(SystemExit):
        ask_client.parse_args([])
    assert ask_client.parse_args(['--status']).status


class HumbleNode:
    """What Humble's rclpy offers for names: no resolve_topic_name."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def get_namespace(self) -> str:
        return self.namespace

    def get_fully_qualified_name(self) -> str:
        return f'{self.namespace.rstrip("/")}/flash_vstream'


@pytest.mark.parametrize(
    ('namespace', 'topic', 'resolved'),
    [
        ('/', 'image_raw', '/image_raw'),
        ('/robot1', 'image_raw', '/robot1/image_raw'),
        ('/robot1', '/cam/image', '/cam/image'),
        ('/robot1', '~/image', '/robot1/flash_vstream/image'),
    ],
)
def test_topic_resolution_without_resolve_topic_name(
    namespace: str, topic: str, resolved: str
) -> None:
    node: Any = HumbleNode(namespace)
    assert compat.resolve_topic(node, topic) == resolved
    assert compat.topic_of(node, object(), topic) == resolved  # a subscription without a name


def test_the_real_topic_name_wins() -> None:
    class Sub:
        topic_name = '/remapped/image'

    node: Any = HumbleNode('/robot1')
    assert compat.topic_of(node, Sub(), 'image_raw') == '/remapped/image'
