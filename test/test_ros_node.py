"""The node as a subprocess with the tiny model, fed 640x480 frames at 30 Hz best effort.

One node for the whole module (namespace /robot1, the launch file's remap of ``image_raw``, a
compressed topic as a second camera); the synthetic camera publishes both topics. Tests run in
file order and the last one stops the node with SIGINT.
"""

from __future__ import annotations

from collections.abc import Iterator
import importlib.util
from pathlib import Path
import time
from types import ModuleType
from typing import Any

from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
import pytest
from rclpy.action import ActionClient
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.config import AppConfig, load_yaml
from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.ros import stamps
from flash_vstream_ros.ros.stamps import to_seconds, to_time
from flash_vstream_ros.srv import Ask, MemoryFile

from _ros_node_helpers import (  # isort: skip
    REPO_ROOT,
    Client,
    Proc,
    poll_until,
    result_of,
    start_camera,
    start_node,
    wait_for,
    write_params,
)
import itertools

pytestmark = pytest.mark.ros

DOMAIN_ID = 72
NODE = '/robot1/flash_vstream'
STATUS = f'{NODE}/memory_status'
FRAMES = f'{NODE}/memory_frames'
RAW_TOPIC = '/cam/front/image_raw'  # where the launch remap sends the node's image_raw
JPEG_TOPIC = '/robot1/image_raw/compressed'
# Quiet topics that only the malformed-message test publishes on: exact counts over best-effort
# QoS hold only where no camera shares the subscription's queue.
PROBE_RAW_TOPIC = '/robot1/probe/image_raw'
PROBE_JPEG_TOPIC = '/robot1/probe/image_raw/compressed'
CAMERAS = ('cam_front_image_raw', 'image_raw_compressed')
RATE_HZ = 2.0
MAX_TOKENS = 2000
STAMP_OFFSET_S = 1000.0


def launch_module() -> ModuleType:
    path = REPO_ROOT / 'launch' / 'flash_vstream.launch.py'
    spec = importlib.util.spec_from_file_location('flash_vstream_launch', path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_ros_args(launch: ModuleType, params: Path) -> tuple[str, ...]:
    """The launch file's parameters and remaps as --ros-args (launch_ros is not here)."""
    args: list[str] = ['-r', '__ns:=/robot1']
    for source in launch.node_parameters(str(params), False):
        if isinstance(source, dict):
            args += [x for k, v in source.items() for x in ('-p', f'{k}:={str(v).lower()}')]
    for old, new in launch.remappings(RAW_TOPIC):
        args += ['-r', f'{old}:={new}']
    return tuple(args)


@pytest.fixture(scope='module')
def memory_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp('node_memory') / 'memory.fvs'


@pytest.fixture(scope='module')
def node(
    tmp_path_factory: pytest.TempPathFactory, tiny_cache_dir: Path, memory_file: Path
) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp('node')
    params = write_params(
        tmp / 'params.yaml',
        {
            'model.cache_dir': str(tiny_cache_dir),
            'model.device': 'cpu',
            'engine.ingest_rate_hz': RATE_HZ,
            'engine.question_queue_size': 0,
            'generation.max_new_tokens': MAX_TOKENS,
            'persistence.path': str(memory_file),
            'persistence.save_on_shutdown': True,
            'ros.image_topics': ['image_raw', 'probe/image_raw'],
            'ros.compressed_topics': ['image_raw/compressed', 'probe/image_raw/compressed'],
            'ros.qos_depth': 10,
            'ros.status_period_s': 0.5,
            'ros.frames_period_s': 1.0,
            'ros.warn_throttle_s': 1.0,
        },
    )
    launch = launch_module()
    proc = start_node(params, DOMAIN_ID, tmp / 'node.log', launch_ros_args(launch, params))
    camera = start_camera(
        DOMAIN_ID,
        tmp / 'camera.log',
        width=640,
        height=480,
        rate_hz=30.0,
        topic=RAW_TOPIC,
        compressed_topic=JPEG_TOPIC,
        stamp='world',  # header stamps 1000 s + i / 30: far from the clock's
        stamp_offset_s=STAMP_OFFSET_S,
    )
    try:
        yield proc
    finally:
        camera.stop()
        proc.stop(timeout=10.0)


@pytest.fixture(scope='module')
def client(node: Proc) -> Iterator[Client]:
    c = Client(DOMAIN_ID)
    c.subscribe(MemoryStatus, STATUS)
    c.subscribe(DiagnosticArray, '/diagnostics')
    c.subscribe(Image, FRAMES)
    try:
        poll_until(
            lambda: c.messages(STATUS)[-1] if c.messages(STATUS) else None,
            lambda s: s is not None and s.frames_ingested >= 6 and set(CAMERAS) <= set(s.cameras),
            120.0,
            f'six frames ingested from both cameras; node log:\n{node.text()[-3000:]}',
        )
        yield c
    finally:
        c.close()


def status(client: Client) -> Any:
    return client.latest(STATUS)


def ask(client: Client, question: str, **fields: Any) -> Any:
    request = Ask.Request(question=question, temperature=-1.0)
    for name, value in fields.items():
        setattr(request, name, value)
    return client.call(Ask, f'{NODE}/ask', request)


def test_launch_defaults_are_the_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(REPO_ROOT / 'no_such_prefix'))  # source tree
    launch = launch_module()
    default_file = launch.launch_arguments()['params_file'][0]
    assert Path(default_file) == REPO_ROOT / 'config' / 'default.yaml'
    assert load_yaml(default_file) == AppConfig()
    assert launch.remappings('/x/image') == [('image_raw', '/x/image')]


def test_node_is_active_with_the_launch_remaps(client: Client) -> None:
    s = status(client)
    assert s.state == 'active'
    assert s.model.startswith('flash_vstream')
    assert s.memory_kind == 'star'
    # Memory stamps are the frames' header stamps as they are (so bags and sim time work).
    assert STAMP_OFFSET_S <= stamps.to_seconds(s.oldest_stamp) < STAMP_OFFSET_S + 300
    topics = dict(client.node.get_topic_names_and_types())
    assert 'sensor_msgs/msg/Image' in topics[RAW_TOPIC]
    subs = client.node.get_subscriptions_info_by_topic(RAW_TOPIC)
    assert any(info.node_namespace == '/robot1' for info in subs)


def test_ingests_at_the_configured_rate_and_counts_the_rest(client: Client) -> None:
    s = status(client)
    span = to_seconds(s.newest_stamp) - to_seconds(s.oldest_stamp)
    assert span > 0
    # Sampling is by stamp: at most RATE_HZ frames per second of stamps, per camera.
    assert s.frames_ingested <= len(CAMERAS) * (RATE_HZ * span + 1) + 1
    assert s.frames_skipped_rate > s.frames_ingested  # 30 Hz offered, 2 Hz kept
    counted = (
        s.frames_ingested + s.frames_skipped_rate + s.frames_dropped_queue + s.frames_rejected
    )
    assert s.frames_received >= counted
    assert s.frames_received - counted <= 2 * 10  # at most the queues in flight
    assert s.ingest_rate_hz > 0
    assert list(s.parts) == ['abstract', 'temporal', 'retrieved', 'spatial']
    assert all(u <= c for u, c in zip(s.part_used, s.part_capacity, strict=True))
    assert s.memory_bytes > 0


def test_service_answers_with_evidence(client: Client) -> None:
    s = status(client)
    response = ask(client, 'what happened?', max_new_tokens=12)
    assert response.success, response.error_message
    assert response.answer
    assert 0 < response.answer_tokens <= 12
    assert response.stop_reason in ('eos', 'length')
    assert response.visual_tokens > 0
    assert response.latency_s > 0
    assert response.evidence
    cameras = {ev.camera for ev in response.evidence}
    assert cameras <= set(CAMERAS)
    oldest = to_seconds(s.oldest_stamp)
    assert all(to_seconds(ev.stamp) >= oldest for ev in response.evidence)
    assert response.memory.state == 'active'
    assert response.memory.frames_ingested >= s.frames_ingested


def test_service_camera_and_window_filters(client: Client) -> None:
    s = status(client)
    newest = to_seconds(s.newest_stamp)
    response = ask(
        client,
        'what is in front?',
        cameras=[CAMERAS[0]],
        max_new_tokens=4,
        window_start=to_time(newest - 2.0),
    )
    assert response.success, response.error_message
    assert {ev.camera for ev in response.evidence} == {CAMERAS[0]}
    assert all(to_seconds(ev.end) >= newest - 2.0 for ev in response.evidence)


@pytest.mark.parametrize(
    ('question', 'fields', 'reason'),
    [
        ('', {}, 'empty'),
        ('x' * 3000, {}, '2000'),
        ('when?', {'cameras': ['no_such_camera']}, 'no_such_camera'),
        ('when?', {'window_start': to_time(200.0), 'window_end': to_time(100.0)}, 'window'),
        ('when?', {'window_last_s': -5.0}, '-5'),
    ],
)
def test_bad_questions_fail_with_a_reason(
    client: Client, question: str, fields: dict[str, Any], reason: str
) -> None:
    response = ask(client, question, **fields)
    assert not response.success
    assert reason in response.error_message
    assert response.memory.state == 'active'


def action_client(client: Client) -> ActionClient[Any, Any, Any]:
    action: ActionClient[Any, Any, Any] = client.on_executor(
        lambda: ActionClient(
            client.node,
            AskStream,
            f'{NODE}/ask_stream',
            feedback_sub_qos_profile=QoSProfile(depth=256),
        )
    )
    assert action.wait_for_server(timeout_sec=30.0)
    return action


def test_action_streams_tokens_as_feedback(client: Client) -> None:
    action = action_client(client)
    feedback: list[Any] = []
    goal = AskStream.Goal(question='what happened?', max_new_tokens=16, temperature=-1.0)
    handle = result_of(
        client.send_goal(action, goal, lambda f: feedback.append(f.feedback)),
        30.0,
        'goal response',
    )
    assert handle.accepted
    # rclpy drops a goal's feedback callback as soon as its result arrives, discarding
    # feedback still queued; so ask for the result only once the goal reports success.
    wait_for(lambda: handle.status == GoalStatus.STATUS_SUCCEEDED, 60.0, 'goal succeeded')
    response = result_of(handle.get_result_async(), 60.0, 'result')
    result = response.result
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    assert result.success, result.error_message
    # Feedback and result travel separately: the last pieces may land after the result. The
    # first pieces may be published before a brand-new client's feedback subscription is
    # matched, so every message carries the answer so far and the check is on that.
    wait_for(
        lambda: bool(feedback) and feedback[-1].partial_answer == result.answer,
        10.0,
        f'feedback reaching {result.answer!r}',
    )
    # Feedback counts tokens generated so far: the last piece's count is the result's, unless
    # tokens after it made no text.
    assert 0 < feedback[-1].answer_tokens <= result.answer_tokens
    for before, after in itertools.pairwise(feedback):
        assert after.answer_tokens > before.answer_tokens
        assert after.partial_answer == before.partial_answer + after.text or (
            after.answer_tokens > before.answer_tokens + 1  # a piece in between was missed
        )
        assert result.answer.startswith(after.partial_answer)
    assert result.evidence


def test_cancel_stops_generation_and_busy_goals_are_refused(client: Client) -> None:
    action = action_client(client)
    feedback: list[Any] = []
    goal = AskStream.Goal(
        question='describe everything', max_new_tokens=MAX_TOKENS, temperature=-1.0
    )
    handle = result_of(
        client.send_goal(action, goal, lambda f: feedback.append(f.feedback)),
        30.0,
        'goal response',
    )
    assert handle.accepted
    wait_for(lambda: len(feedback) >= 3, 30.0, 'the first tokens')
    # One question at a time and engine.question_queue_size=0: a second one is refused.
    second = result_of(
        client.send_goal(action, AskStream.Goal(question='and now?')),
        30.0,
        'second goal response',
    )
    assert not second.accepted
    busy = ask(client, 'and now?')
    assert not busy.success
    assert 'busy' in busy.error_message
    cancel = result_of(handle.cancel_goal_async(), 30.0, 'cancel response')
    assert len(cancel.goals_canceling) == 1
    response = result_of(handle.get_result_async(), 60.0, 'cancelled result')
    assert response.status == GoalStatus.STATUS_CANCELED
    assert response.result.stop_reason == 'cancelled'
    assert 3 <= response.result.answer_tokens < MAX_TOKENS
    assert response.result.answer.startswith(feedback[2].partial_answer)
    after = ask(client, 'still there?', max_new_tokens=2)
    assert after.success, after.error_message


def rejected(client: Client) -> int:
    return int(status(client).frames_rejected)


def settled_rejected(client: Client) -> int:
    """The rejected count once two status messages in a row agree (nothing in flight)."""
    time.sleep(1.0)
    seen: list[int] = []

    def stable() -> bool:
        seen.append(rejected(client))
        time.sleep(0.6)  # longer than ros.status_period_s
        return rejected(client) == seen[-1]

    wait_for(stable, 30.0, 'a settled rejected count')
    return seen[-1]


def publish_burst(client: Client, msg_type: Any, topic: str, msgs: list[Any]) -> int:
    """Publish ``msgs`` once each after the path is proven; returns the rejected count before."""
    publisher = client.on_executor(lambda: client.node.create_publisher(msg_type, topic, 50))
    try:
        wait_for(lambda: publisher.get_subscription_count() > 0, 30.0, f'subscriber of {topic}')
        first = rejected(client)

        def probe() -> bool:  # discovery is asymmetric: repeat one message until it counts
            publisher.publish(msgs[0])
            time.sleep(0.3)
            return rejected(client) > first

        wait_for(probe, 30.0, f'the node to count a malformed message on {topic}')
        base = settled_rejected(client)
        for msg in msgs:
            msg.header.stamp = client.node.get_clock().now().to_msg()
            publisher.publish(msg)
            time.sleep(0.05)  # within the node's queue depth, whatever the camera sends
        return base
    finally:
        client.on_executor(lambda: client.node.destroy_publisher(publisher))


def malformed_images() -> list[Image]:
    def img(**fields: Any) -> Image:
        good: dict[str, Any] = {
            'height': 4,
            'width': 4,
            'encoding': 'rgb8',
            'step': 12,
            'data': bytes(48),
        }
        good.update(fields)
        msg = Image(
            height=good['height'],
            width=good['width'],
            encoding=good['encoding'],
            step=good['step'],
            is_bigendian=good.get('is_bigendian', 0),
        )
        msg.data = good['data']
        return msg

    return [
        img(encoding='rgb9'),
        img(encoding=''),
        img(width=0),
        img(height=0),
        img(width=100_000, step=300_000),
        img(step=11),
        img(data=bytes(47)),
        img(data=b''),
        img(height=40_000),
        img(encoding='mono16', step=7, data=bytes(28)),
        img(encoding='yuv422', width=3, step=6, data=bytes(24)),
    ]


def malformed_jpegs() -> list[CompressedImage]:
    bodies = [b'', b'\xff\xd8\xff\xe0' + bytes(60), bytes(range(256)), b'not an image']
    out = []
    for body in bodies:
        msg = CompressedImage(format='jpeg')
        msg.data = body
        out.append(msg)
    return out


def wait_rejected(client: Client, count: int) -> Any:
    return poll_until(
        lambda: status(client),
        lambda s: s.frames_rejected >= count,
        30.0,
        f'{count} rejected frames',
    )


def test_survives_a_burst_of_malformed_messages(client: Client, node: Proc) -> None:
    for msg_type, topic, msgs in (
        (Image, PROBE_RAW_TOPIC, malformed_images()),
        (CompressedImage, PROBE_JPEG_TOPIC, malformed_jpegs()),
    ):
        base = publish_burst(client, msg_type, topic, msgs)
        expected = base + len(msgs)
        s = wait_rejected(client, expected)
        assert settled_rejected(client) == expected, f'every malformed {msg_type.__name__} once'
    assert node.alive()
    assert 'frame rejected' in node.text()
    assert s.frames_ingested > 0
    assert ask(client, 'still fine?', max_new_tokens=2).success


def test_status_diagnostics_and_memory_frames_are_published(client: Client) -> None:
    s = status(client)
    assert s.header.stamp.sec > 0
    assert s.frames_received > 0
    diag = client.latest('/diagnostics')
    entries = [e for e in diag.status if e.name == 'flash_vstream: memory']
    assert entries
    values = {kv.key: kv.value for kv in entries[-1].values}
    assert values['lifecycle state'] == 'active'
    assert int(values['frames ingested']) > 0
    assert 'fill temporal' in values
    frames = client.latest(FRAMES)
    assert frames.encoding == 'rgb8'
    assert frames.width % 96 == 0
    assert frames.height > 0
    assert len(frames.data) == frames.step * frames.height


def test_memory_save_load_and_reset_services(client: Client, tmp_path: Path) -> None:
    path = tmp_path / 'saved.fvs'
    saved = client.call(MemoryFile, f'{NODE}/save_memory', MemoryFile.Request(path=str(path)))
    assert saved.success, saved.message
    assert path.stat().st_size == saved.bytes > 0
    assert saved.frames > 0
    loaded = client.call(MemoryFile, f'{NODE}/load_memory', MemoryFile.Request(path=str(path)))
    assert loaded.success, loaded.message
    assert loaded.frames == saved.frames
    missing = client.call(
        MemoryFile, f'{NODE}/load_memory', MemoryFile.Request(path=str(tmp_path / 'missing.fvs'))
    )
    assert not missing.success
    assert 'missing.fvs' in missing.message
    reset = client.call(Trigger, f'{NODE}/reset_memory', Trigger.Request())
    assert reset.success, reset.message


def test_sigint_stops_cleanly_and_saves(client: Client, node: Proc, memory_file: Path) -> None:
    rc = node.stop(timeout=30.0)
    log = node.text()
    assert rc == 0, log[-3000:]
    assert 'Traceback' not in log, log[-3000:]
    assert memory_file.stat().st_size > 0
