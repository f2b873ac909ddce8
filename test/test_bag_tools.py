"""flash_vstream_bag: record the synthetic camera, play bags back with /clock (real rclpy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import subprocess
import sys
import time
from typing import Any

from _sim_procs import module_cmd, ros_env, running, stop, wait_exit, wait_for
import numpy as np
import pytest

from flash_vstream_ros.sim import World, WorldConfig, frame_stamp_ns, read_events
from flash_vstream_ros.sim.bag import typestore, write_world_bag

rclpy = pytest.importorskip('rclpy', reason='rclpy (ros-rclpy wheels) is not installed')
pytest.importorskip('sensor_msgs.msg', reason='sensor_msgs is not installed')
pytest.importorskip('rosgraph_msgs.msg', reason='rosgraph_msgs is not installed')

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from flash_vstream_ros.ros.bag_common import from_bag_qos, resolve  # noqa: E402
from flash_vstream_ros.sim.bag import sensor_qos  # noqa: E402


def ext(conn: Any) -> Any:
    """The rosbag2 extension of a connection (typed loosely)."""
    return conn.ext


pytestmark = [pytest.mark.ros, pytest.mark.timeout(180)]

BAG = 'flash_vstream_ros.ros.bag_tools'
CAMERA = 'flash_vstream_ros.ros.sim_camera'


def camera_cmd(frames: int, *extra: str) -> list[str]:
    return module_cmd(
        CAMERA,
        '--ros-args',
        '-p',
        'width:=160',
        '-p',
        'height:=120',
        '-p',
        f'max_frames:={frames}',
        '-p',
        'reliability:=reliable',
        '-p',
        f'depth:={frames}',
        '-p',
        'wait_subscribers:=1',
        '-p',
        'stamp:=world',
        *extra,
    )


def test_record_the_sim_camera(tmp_path: Path) -> None:
    env, bag, frames = ros_env(82), tmp_path / 'bag', 45
    rec_cmd = module_cmd(BAG, 'record', str(bag), '--max-messages', str(frames))
    with running(rec_cmd, env, tmp_path / 'rec.log') as rec:
        cam_log = tmp_path / 'cam.log'
        with running(
            camera_cmd(frames, '-p', f'event_log:={tmp_path / "ev.jsonl"}'), env, cam_log
        ) as cam:
            assert wait_exit(cam, 90, cam_log) == 0
        assert wait_exit(rec, 30, tmp_path / 'rec.log') == 0
    world, store = World(WorldConfig(width=160, height=120)), typestore()
    with Reader(bag) as reader:
        (conn,) = reader.connections
        assert (conn.topic, conn.msgtype) == ('/image_raw', 'sensor_msgs/msg/Image')
        assert ext(conn).serialization_format == 'cdr'
        assert [q.reliability.name for q in ext(conn).offered_qos_profiles] == ['RELIABLE']
        messages = list(reader.messages())
    assert len(messages) == frames
    for index, (_, _, raw) in enumerate(messages):
        msg: Any = store.deserialize_cdr(raw, 'sensor_msgs/msg/Image')
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        assert stamp == frame_stamp_ns(index, 30.0, 1_000_000_000)
        assert msg.header.frame_id == 'sim_camera'
        image = np.asarray(msg.data, np.uint8).reshape(120, 160, 3)
        assert np.array_equal(image, world.render(index / 30.0))
    logged = [r for r in read_events(tmp_path / 'ev.jsonl') if r['event'] == 'frame']
    assert [r['stamp_ns'] for r in logged] == [
        frame_stamp_ns(i, 30.0, 1_000_000_000) for i in range(frames)
    ]


class Probe:
    """An in-test node on sim time that keeps every raw image it receives."""

    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(
            'probe',
            context=self.context,
            parameter_overrides=[Parameter('use_sim_time', Parameter.Type.BOOL, True)],
        )
        self.received: list[tuple[float, bytes]] = []
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, '/image_raw', self._keep, qos, raw=True)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _keep(self, raw: bytes) -> None:
        self.received.append((time.monotonic(), raw))

    def spin_until(self, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        for _ in range(20):  # drain what is still in flight
            self.executor.spin_once(timeout_sec=0.05)

    def sim_now_ns(self) -> int:
        return int(self.node.get_clock().now().nanoseconds)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def probe() -> Iterator[Probe]:
    p = Probe(83)
    yield p
    p.close()


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_play_publishes_the_recorded_bytes_with_clock(
    tmp_path: Path, probe: Probe, storage: str
) -> None:
    info = write_world_bag(
        tmp_path / 'bag', frames=30, fps=30.0, width=96, height=64, storage=storage
    )
    with Reader(tmp_path / 'bag') as reader:
        recorded = [raw for _, _, raw in reader.messages()]
    cmd = module_cmd(
        BAG, 'play', str(tmp_path / 'bag'), '--wait-subscribers', '1', '--reliability', 'reliable'
    )
    log = tmp_path / 'play.log'
    with running(cmd, ros_env(83), log) as player:
        probe.spin_until(player, 60)
        assert wait_exit(player, 10, log) == 0
    assert [raw for _, raw in probe.received] == recorded
    wall = probe.received[-1][0] - probe.received[0][0]
    assert wall >= 0.9 * 29 / 30.0  # paced at the recorded speed, not as fast as possible
    assert info.stamps_ns[-3] <= probe.sim_now_ns() <= info.stamps_ns[-1]  # followed /clock


def test_play_rate_and_start_offset(tmp_path: Path, probe: Probe) -> None:
    write_world_bag(tmp_path / 'bag', frames=60, fps=30.0, width=64, height=48)
    cmd = module_cmd(
        BAG,
        'play',
        str(tmp_path / 'bag'),
        '--wait-subscribers',
        '1',
        '--reliability',
        'reliable',
        '--rate',
        '4',
        '--start-offset',
        '1.0',
    )
    log = tmp_path / 'play.log'
    with running(cmd, ros_env(83), log) as player:
        probe.spin_until(player, 60)
        assert wait_exit(player, 10, log) == 0
    store = typestore()
    stamps = []
    for _, raw in probe.received:
        msg: Any = store.deserialize_cdr(raw, 'sensor_msgs/msg/Image')
        header = msg.header
        stamps.append(header.stamp.sec * 1_000_000_000 + header.stamp.nanosec)
    assert stamps == [frame_stamp_ns(i, 30.0, 1_000_000_000) for i in range(30, 60)]


def test_replay_qos_follows_the_offered_profile() -> None:
    assert from_bag_qos([sensor_qos()], 5, 'auto').reliability == ReliabilityPolicy.BEST_EFFORT
    assert from_bag_qos([sensor_qos(True)], 5, 'auto').reliability == ReliabilityPolicy.RELIABLE
    assert from_bag_qos([], 5, 'auto').reliability == ReliabilityPolicy.BEST_EFFORT
    assert from_bag_qos([sensor_qos()], 5, 'reliable').reliability == ReliabilityPolicy.RELIABLE


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['record', '{existing}'], 'exists'),
        (['play', '{missing}'], 'missing'),
        (['play', '{bag}', '--rate', '0'], 'rate'),
        (['play', '{bag}', '--topics', '/nothing'], 'none of the topics'),
    ],
)
def test_bad_requests_exit_2_with_a_reason(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / 'existing').mkdir()
    write_world_bag(tmp_path / 'bag', frames=1, width=32, height=24)
    names: dict[str, Any] = {k: tmp_path / k for k in ('existing', 'missing', 'bag')}
    cmd = module_cmd(BAG, *[a.format(**names) for a in args])
    done = subprocess.run(
        cmd, env=ros_env(84), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_wait_for_helper_fails_with_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match='the moon'):
        wait_for(lambda: False, 0.1, 'the moon')


def test_sigint_closes_the_bag_cleanly(tmp_path: Path) -> None:
    env, bag, frames = ros_env(82), tmp_path / 'bag', 20
    rec_log = tmp_path / 'rec.log'
    with running(module_cmd(BAG, 'record', str(bag), '--storage', 'sqlite3'), env,
                 rec_log) as rec:  # fmt: skip
        cam_log = tmp_path / 'cam.log'
        with running(camera_cmd(frames), env, cam_log) as cam:
            assert wait_exit(cam, 90, cam_log) == 0
        time.sleep(0.5)  # the last frames are acknowledged before the camera exits
        assert stop(rec) == 0, rec_log.read_text()
    assert (bag / 'metadata.yaml').exists()
    with Reader(bag) as reader:
        assert reader.message_count == frames


def test_loop_replays_until_sigint(tmp_path: Path, probe: Probe) -> None:
    write_world_bag(tmp_path / 'bag', frames=5, fps=30.0, width=32, height=24)
    cmd = module_cmd(BAG, 'play', str(tmp_path / 'bag'), '--wait-subscribers', '1',
                     '--reliability', 'reliable', '--loop', '--rate', '2')  # fmt: skip
    log = tmp_path / 'play.log'
    with running(cmd, ros_env(83), log) as player:
        deadline = time.monotonic() + 60
        while len(probe.received) < 12 and time.monotonic() < deadline:
            probe.executor.spin_once(timeout_sec=0.05)
        assert stop(player) == 0, log.read_text()
    assert len(probe.received) >= 12  # more than two passes over five frames


def test_record_raw_and_compressed_topics(tmp_path: Path) -> None:
    env, bag, frames = ros_env(82), tmp_path / 'bag', 10
    rec_cmd = module_cmd(BAG, 'record', str(bag), '--topics', 'image_raw', 'image_raw/jpeg',
                         '--max-messages', str(2 * frames))  # fmt: skip
    with running(rec_cmd, env, tmp_path / 'rec.log') as rec:
        cam_log = tmp_path / 'cam.log'
        cam_cmd = camera_cmd(frames, '-p', 'compressed_topic:=image_raw/jpeg')
        with running(cam_cmd, env, cam_log) as cam:
            assert wait_exit(cam, 90, cam_log) == 0
        assert wait_exit(rec, 30, tmp_path / 'rec.log') == 0
    with Reader(bag) as reader:
        types = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    assert types == {
        '/image_raw': ('sensor_msgs/msg/Image', frames),
        '/image_raw/jpeg': ('sensor_msgs/msg/CompressedImage', frames),
    }


class OldNode:
    """What rclpy before Iron offers for name resolution (no resolve_topic_name)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def get_namespace(self) -> str:
        return self.namespace


def test_topic_resolution_without_resolve_topic_name() -> None:
    assert resolve(OldNode('/'), 'image_raw') == '/image_raw'  # type: ignore[arg-type]
    assert resolve(OldNode('/robot'), 'cam/image') == '/robot/cam/image'  # type: ignore[arg-type]
    assert resolve(OldNode('/robot'), '/abs') == '/abs'  # type: ignore[arg-type]


def test_a_publish_failing_after_sigint_is_the_stop_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT shuts the context down at any moment; the publish in flight then raises. The
    player used to exit 1 with a traceback (seen under load); it is the stop asked for."""
    from flash_vstream_ros.ros import bag_tools

    write_world_bag(tmp_path / 'bag', frames=3, fps=30.0, width=32, height=24)

    def interrupted(self: Any) -> None:
        rclpy.shutdown()  # what the SIGINT handler does
        raise RuntimeError("Failed to publish: publisher's context is invalid")

    monkeypatch.setattr(bag_tools.Player, 'play_once', interrupted)
    monkeypatch.setenv('ROS_DOMAIN_ID', '84')
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    assert bag_tools.main(['flash_vstream_bag', 'play', str(tmp_path / 'bag'), '--loop']) == 0

    def broken(self: Any) -> None:
        raise RuntimeError('a real failure')  # the context is fine: this one must surface

    monkeypatch.setattr(bag_tools.Player, 'play_once', broken)
    with pytest.raises(RuntimeError, match='a real failure'):
        bag_tools.main(['flash_vstream_bag', 'play', str(tmp_path / 'bag')])


def test_a_hung_teardown_ends_with_the_stacks_printed() -> None:
    # The recorder arms guard_teardown once its bag is closed; a teardown that then hangs (as
    # one did on a loaded CI machine) must end the tool with its status and say where it was.
    code = (
        'import threading, time\n'
        'from flash_vstream_ros.ros.compat import guard_teardown\n'
        "guard_teardown(0.5, 'demo tool', code=3)\n"
        'threading.Event().wait(60)\n'  # the stand-in for a teardown that never returns
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=50)
    assert done.returncode == 3
    assert 'demo tool: ROS teardown not done after 0.5 s; exiting' in done.stderr
    assert 'File "<string>", line 4' in done.stderr  # the main thread's stack, where it hung
    assert time.monotonic() - start < 45
