"""flash_vstream_sim_camera as a process: topics, encodings, headers, sim time, exit paths."""

from __future__ import annotations

from pathlib import Path
import subprocess
import time
from typing import Any

from _sim_procs import module_cmd, ros_env, running, stop, wait_exit
import cv2
import numpy as np
import pytest

from flash_vstream_ros.sim import World, WorldConfig, read_events

rclpy = pytest.importorskip('rclpy', reason='rclpy (ros-rclpy wheels) is not installed')
pytest.importorskip('sensor_msgs.msg', reason='sensor_msgs is not installed')
pytest.importorskip('rosgraph_msgs.msg', reason='rosgraph_msgs is not installed')

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from flash_vstream_ros.errors import ConfigError  # noqa: E402
from flash_vstream_ros.ros.sim_camera import SimCameraSettings  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.timeout(180)]

CAMERA = 'flash_vstream_ros.ros.sim_camera'
DOMAIN = 89


class Viewer:
    """An in-test node keeping the camera's Image and CompressedImage messages."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN)
        self.node = rclpy.create_node('viewer', context=self.context)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.images: list[Any] = []
        self.jpegs: list[Any] = []
        self.node.create_subscription(Image, '/cam/image', self.images.append, qos)
        self.node.create_subscription(CompressedImage, '/cam/jpeg', self.jpegs.append, qos)
        self.clock = self.node.create_publisher(Clock, '/clock', 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_while(self, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
        for _ in range(10):
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def viewer() -> Any:
    v = Viewer()
    yield v
    v.close()


def camera(frames: int, *params: str) -> list[str]:
    args = ['width:=80', 'height:=60', f'max_frames:={frames}', 'reliability:=reliable',
            f'depth:={max(frames, 5)}', 'wait_subscribers:=1', 'topic:=/cam/image',
            *params]  # fmt: skip
    return module_cmd(CAMERA, '--ros-args', *[x for p in args for x in ('-p', p)])


def stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def test_bgr_and_jpeg_with_world_stamps(tmp_path: Path, viewer: Viewer) -> None:
    cmd = camera(12, 'encoding:=bgr8', 'compressed_topic:=/cam/jpeg', 'stamp:=world',
                 'stamp_offset_s:=5.0', 'frame_id:=cam_optical', 'seed:=7',
                 'jpeg_quality:=95')  # fmt: skip
    log = tmp_path / 'cam.log'
    with running(cmd, ros_env(DOMAIN), log) as proc:
        viewer.spin_while(proc, 60)
        assert wait_exit(proc, 10, log) == 0
    world = World(WorldConfig(width=80, height=60, seed=7))
    assert len(viewer.images) == 12
    assert len(viewer.jpegs) == 12
    for i, (raw, jpg) in enumerate(zip(viewer.images, viewer.jpegs, strict=True)):
        expected_ns = 5_000_000_000 + round(i * 1e9 / 30.0)
        assert stamp_ns(raw) == stamp_ns(jpg) == expected_ns
        assert raw.header.frame_id == jpg.header.frame_id == 'cam_optical'
        assert (raw.encoding, raw.width, raw.height, raw.step) == ('bgr8', 80, 60, 240)
        rgb = np.frombuffer(bytes(raw.data), np.uint8).reshape(60, 80, 3)[:, :, ::-1]
        assert np.array_equal(rgb, world.render(i / 30.0))
        assert jpg.format == 'jpeg'
        decoded: Any = cv2.imdecode(np.frombuffer(bytes(jpg.data), np.uint8), cv2.IMREAD_COLOR)
        error = np.abs(decoded[:, :, ::-1].astype(int) - rgb.astype(int)).mean()
        assert error < 8.0


def test_stamps_follow_the_sim_clock(tmp_path: Path, viewer: Viewer) -> None:
    events = tmp_path / 'ev.jsonl'
    cmd = camera(5, f'event_log:={events}', 'rate_hz:=10.0', 'use_sim_time:=true')
    log = tmp_path / 'cam.log'
    sim_ns = 1_000 * 1_000_000_000
    with running(cmd, ros_env(DOMAIN), log) as proc:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            sim_ns += 10_000_000  # 10 ms of sim time per 10 ms of wall time
            tick = Clock()
            tick.clock.sec, tick.clock.nanosec = divmod(sim_ns, 1_000_000_000)
            viewer.clock.publish(tick)
            viewer.executor.spin_once(timeout_sec=0.01)
        viewer.spin_while(proc, 1)
        assert wait_exit(proc, 10, log) == 0
    stamps = [stamp_ns(m) for m in viewer.images]
    assert len(stamps) == 5
    assert all(1_000 * 1_000_000_000 < s <= sim_ns for s in stamps)  # sim time, not wall time
    assert stamps == sorted(stamps)
    logged = [r['stamp_ns'] for r in read_events(events) if r['event'] == 'frame']
    assert logged == stamps


def test_sigint_stops_cleanly_and_closes_the_event_log(tmp_path: Path) -> None:
    events = tmp_path / 'ev.jsonl'
    cmd = camera(0, f'event_log:={events}', 'wait_subscribers:=0')
    log = tmp_path / 'cam.log'
    with running(cmd, ros_env(DOMAIN), log) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            not events.exists() or sum(1 for _ in events.open()) < 10
        ):
            time.sleep(0.05)
        assert stop(proc) == 0, log.read_text()
    records = read_events(events)
    assert records[0]['event'] == 'world'
    assert sum(r['event'] == 'frame' for r in records) >= 9
    assert events.read_text().endswith('\n')  # no half-written line


def test_bad_parameter_exits_2_with_the_value(tmp_path: Path) -> None:
    done = subprocess.run(camera(1, 'encoding:=yuv422'), env=ros_env(DOMAIN),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "encoding must be rgb8 or bgr8, got 'yuv422'" in done.stderr


def test_settings_validate_without_ros() -> None:
    assert SimCameraSettings().world().width == 640
    with pytest.raises(ConfigError, match='rate_hz'):
        SimCameraSettings(rate_hz=0.0)
    with pytest.raises(ConfigError, match='topic'):
        SimCameraSettings(topic='', compressed_topic='')


def test_an_rclpy_error_after_sigint_is_the_stop_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under load SIGINT can shut the context down between the loop's rclpy.ok() and its next
    spin_once, which then raises RCLError ('the given context is not valid'): the camera used to
    exit 1 with a traceback. After a shutdown it is the stop; before one, a real error."""
    from flash_vstream_ros.ros import sim_camera

    def interrupted(*_: Any, **__: Any) -> None:
        rclpy.shutdown()  # what the SIGINT handler does
        raise RuntimeError('failed to initialize wait set: the given context is not valid')

    monkeypatch.setenv('ROS_DOMAIN_ID', str(DOMAIN))
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    monkeypatch.setattr(sim_camera.rclpy, 'spin_once', interrupted)
    assert sim_camera.main(['sim_camera']) == 0

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError('a real failure')

    monkeypatch.setattr(sim_camera.rclpy, 'spin_once', broken)
    with pytest.raises(RuntimeError, match='a real failure'):
        sim_camera.main(['sim_camera'])
