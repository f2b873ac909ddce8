"""The node fed by the synthetic camera and by a bag replay: memory and counters vs ground truth.

Runs the real node (``flash_vstream_ros.ros.node``) with the tiny model as a subprocess on
loopback, the sim camera and the bag tools as subprocesses, and asks through ``~/ask``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import importlib.util
from pathlib import Path
import subprocess
import time
from typing import Any

from _sim_procs import module_cmd, ros_env, running, wait_exit
import pytest
import torch

from flash_vstream_ros.stamps import to_ns

if importlib.util.find_spec('flash_vstream_ros.ros.node') is None:
    pytest.skip(
        'flash_vstream_ros/ros/node.py is not there (node helper)', allow_module_level=True
    )
rclpy = pytest.importorskip('rclpy', reason='rclpy (ros-rclpy wheels) is not installed')
srv = pytest.importorskip(
    'flash_vstream_ros.srv', reason='interfaces not built: pip install . (packaging)'
)
msg = pytest.importorskip('flash_vstream_ros.msg', reason='interfaces not built')

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

from flash_vstream_ros.config import AppConfig, ModelConfig, RosConfig, with_overrides  # noqa: E402
from flash_vstream_ros.engine import Engine  # noqa: E402
from flash_vstream_ros.engine.ingest import RateSampler  # noqa: E402
from flash_vstream_ros.io.persistence import load_file  # noqa: E402
from flash_vstream_ros.sim import World, WorldConfig, frame_stamp_ns, read_events  # noqa: E402
from flash_vstream_ros.sim.events import seconds  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.model, pytest.mark.timeout(600)]

NODE = 'flash_vstream_ros.ros.node'
CAMERA = 'flash_vstream_ros.ros.sim_camera'
BAG = 'flash_vstream_ros.ros.bag_tools'
WIDTH, HEIGHT, FPS = 160, 120, 30.0
CAMERA_NAME = 'image_raw'  # the node's camera name of /image_raw


def node_cmd(cache_dir: Path, *extra: str) -> list[str]:
    return module_cmd(
        NODE, '--ros-args', '-p', f'model.cache_dir:={cache_dir}', '-p', 'model.device:=cpu',
        '-p', 'ros.qos_reliability:=reliable', '-p', 'ros.qos_depth:=100', '-p',
        'ros.status_period_s:=0.2', '-p', 'engine.frame_queue_size:=64', *extra,
    )  # fmt: skip


def camera_cmd(frames: int, *extra: str) -> list[str]:
    return module_cmd(
        CAMERA, '--ros-args', '-p', f'width:={WIDTH}', '-p', f'height:={HEIGHT}', '-p',
        f'rate_hz:={FPS}', '-p', f'max_frames:={frames}', '-p', 'reliability:=reliable', '-p',
        f'depth:={frames}', '-p', 'wait_subscribers:=1', *extra,
    )  # fmt: skip


def sampled(stamps: list[int], rate_hz: float) -> list[int]:
    """The stamps (ns) the engine keeps at ``rate_hz`` (its own sampling rule, by stamp)."""
    sampler = RateSampler(rate_hz)
    return [s for s in stamps if sampler.decide(s, CAMERA_NAME) == 'accept']


def settled(status: Any, frames: int) -> bool:
    """``frames`` frames received and each one ingested, skipped, dropped or rejected."""
    return status is not None and status.frames_received >= frames and status.frames_received == (
        status.frames_ingested + status.frames_skipped_rate + status.frames_dropped_queue
        + status.frames_rejected
    )  # fmt: skip


def to_s(t: Any) -> float:
    return int(t.sec) + int(t.nanosec) / 1e9


class Client:
    """An in-test node: ~/memory_status, ~/ask and ~/save_memory of the flash_vstream node."""

    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('sim_test_client', context=self.context)
        self.status: Any = None
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.node.create_subscription(
            msg.MemoryStatus, '/flash_vstream/memory_status', self._keep, qos
        )
        self.ask_client = self.node.create_client(srv.Ask, '/flash_vstream/ask')
        self.save_client = self.node.create_client(srv.MemoryFile, '/flash_vstream/save_memory')
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _keep(self, status: Any) -> None:
        self.status = status

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f'timed out after {timeout_s} s waiting for {what}; last status: {self.status}'
                )
            self.executor.spin_once(timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def wait_active(self, timeout_s: float = 120.0) -> None:
        self.spin_until(
            lambda: self.status is not None and self.status.state == 'active', timeout_s,
            'the node to be active',
        )  # fmt: skip

    def wait_counted(self, frames: int, timeout_s: float = 120.0) -> Any:
        """Wait until ~/memory_status says ``frames`` frames were received and all handled."""
        self.spin_until(
            lambda: settled(self.status, frames), timeout_s,
            f'{frames} frames received and handled',
        )  # fmt: skip
        return self.status

    def wait_counted_by_ask(self, frames: int, timeout_s: float = 120.0) -> Any:
        """The same through ~/ask answers (on sim time the status timer stops with /clock)."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.ask('What is in front of you?')
            if answer.success and settled(answer.memory, frames):
                return answer
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out after {timeout_s} s waiting for {frames} '
                                     f'frames handled; last answer: {answer}')  # fmt: skip
            self.spin_for(0.2)

    def call(self, client: Any, request: Any, timeout_s: float = 120.0) -> Any:
        self.spin_until(lambda: client.service_is_ready(), 60.0, f'service {client.srv_name}')
        future = client.call_async(request)
        self.spin_until(future.done, timeout_s, f'the answer of {client.srv_name}')
        return future.result()

    def ask(self, question: str) -> Any:
        request = srv.Ask.Request()
        request.question = question
        request.max_new_tokens = 4
        return self.call(self.ask_client, request)

    def save(self, path: Path) -> Any:
        request = srv.MemoryFile.Request()
        request.path = str(path)
        return self.call(self.save_client, request)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def client_factory() -> Iterator[Callable[[int], Client]]:
    made: list[Client] = []

    def make(domain_id: int) -> Client:
        made.append(Client(domain_id))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_node_memory_and_counters_agree_with_the_sim_camera(
    tmp_path: Path, tiny_cache_dir: Path, client_factory: Callable[[int], Client]
) -> None:
    domain, frames, rate = 86, 240, 2.0
    env = ros_env(domain)
    node_log = tmp_path / 'node.log'
    with running(node_cmd(tiny_cache_dir, '-p', f'engine.ingest_rate_hz:={rate}'), env,
                 node_log):  # fmt: skip
        client = client_factory(domain)
        client.wait_active()
        events = tmp_path / 'events.jsonl'
        cam_log = tmp_path / 'cam.log'
        with running(camera_cmd(frames, '-p', f'event_log:={events}'), env, cam_log) as cam:
            client.spin_until(lambda: cam.poll() is not None, 120, 'the camera to finish')
            assert cam.returncode == 0, cam_log.read_text()
        status = client.wait_counted(frames)
        answer = client.ask('Which coloured objects did you see?')
    assert answer.success, answer.error_message
    published_ns = [r['stamp_ns'] for r in read_events(events) if r['event'] == 'frame']
    published = [seconds(ns) for ns in published_ns]
    assert len(published) == frames
    kept = [seconds(ns) for ns in sampled(published_ns, rate)]  # the sampler works in ns
    # counters: everything sent arrived, and the rate sampling kept exactly the expected frames
    assert status.frames_received == frames
    assert status.frames_rejected == 0
    assert status.frames_dropped_queue == 0
    assert status.frames_ingested == len(kept)
    assert status.frames_skipped_rate == frames - len(kept)
    memory = answer.memory  # taken when the question was answered, after the last update
    assert memory.frames_received == frames
    assert memory.frames_ingested == len(kept)
    assert to_s(memory.oldest_stamp) == pytest.approx(kept[0], abs=1e-6)
    assert to_s(memory.newest_stamp) == pytest.approx(kept[-1], abs=1e-6)
    # evidence: within the published stamps; single-frame elements are exactly sampled frames
    assert answer.evidence
    for ev in answer.evidence:
        assert ev.camera == CAMERA_NAME
        start, stamp, end = to_s(ev.start), to_s(ev.stamp), to_s(ev.end)
        assert published[0] - 1e-6 <= start <= stamp + 1e-6
        assert stamp <= end + 1e-6
        assert end <= published[-1] + 1e-6
        if ev.part in ('spatial', 'retrieved'):
            assert min(abs(stamp - k) for k in kept) < 1e-6, (ev.part, stamp)
    spatial = [to_s(ev.stamp) for ev in answer.evidence if ev.part == 'spatial']
    assert spatial == pytest.approx([kept[-1]], abs=1e-6)  # the newest frame


def direct_memory(cache_dir: Path, rate: float, frames: int, path: Path) -> None:
    """Feed the same world frames with the same stamps straight into an Engine; save it."""
    base = AppConfig(model=ModelConfig(cache_dir=str(cache_dir), device='cpu'), ros=RosConfig())
    cfg = with_overrides(base, {'engine.ingest_rate_hz': rate, 'engine.frame_queue_size': 64})
    world = World(WorldConfig(width=WIDTH, height=HEIGHT))
    engine = Engine(cfg)
    engine.start()
    try:
        for i in range(frames):
            stamp = seconds(frame_stamp_ns(i, FPS, 1_000_000_000))
            engine.submit_frame(world.render(i / FPS), to_ns(stamp), CAMERA_NAME)
            assert engine.wait_idle(60.0)
        assert engine.status().frames_dropped_queue == 0
        engine.save_memory(str(path))
    finally:
        engine.stop()


def assert_same_memory(a: Path, b: Path) -> None:
    first, second = load_file(a), load_file(b)
    assert first.info['frames'] == second.info['frames']
    assert [r.key for r in first.records] == [r.key for r in second.records]
    for x, y in zip(first.records, second.records, strict=True):
        assert sorted(x.tensors) == sorted(y.tensors)
        for name in x.tensors:
            assert torch.equal(x.tensors[name], y.tensors[name]), (x.key, name)


def record_sim_bag(tmp_path: Path, domain: int, frames: int) -> Path:
    """Record the sim camera (stamp=world) with flash_vstream_bag record."""
    env, bag = ros_env(domain), tmp_path / 'bag'
    rec_log, cam_log = tmp_path / 'rec.log', tmp_path / 'cam.log'
    rec_cmd = module_cmd(BAG, 'record', str(bag), '--max-messages', str(frames))
    with running(rec_cmd, env, rec_log) as rec:
        with running(camera_cmd(frames, '-p', 'stamp:=world'), env, cam_log) as cam:
            assert wait_exit(cam, 120, cam_log) == 0
        assert wait_exit(rec, 60, rec_log) == 0
    return bag


def test_bag_replay_on_sim_time_gives_the_same_memory_as_direct_frames(
    tmp_path: Path, tiny_cache_dir: Path, client_factory: Callable[[int], Client]
) -> None:
    domain, frames, rate = 87, 90, 5.0
    bag = record_sim_bag(tmp_path, domain, frames)
    env = ros_env(domain)
    node_args = ('-p', f'engine.ingest_rate_hz:={rate}', '-p', 'use_sim_time:=true')
    with running(node_cmd(tiny_cache_dir, *node_args), env, tmp_path / 'node.log'):
        client = client_factory(domain)  # not wait_active: no /clock, no status yet
        play_cmd = module_cmd(
            BAG, 'play', str(bag), '--wait-subscribers', '1', '--rate', '0.5',
            '--discovery-timeout', '240',  # the node starting beside it on a loaded machine
        )  # fmt: skip
        play_log = tmp_path / 'play.log'
        with running(play_cmd, env, play_log) as player:
            client.spin_until(lambda: player.poll() is not None, 400, 'the replay to finish')
            assert player.returncode == 0, play_log.read_text()
        status = client.wait_counted_by_ask(frames).memory
        assert status.frames_received == frames
        assert status.frames_dropped_queue == 0
        saved = client.save(tmp_path / 'replayed.fvsm')
        assert saved.success, saved.message
    direct_memory(tiny_cache_dir, rate, frames, tmp_path / 'direct.fvsm')
    assert_same_memory(tmp_path / 'replayed.fvsm', tmp_path / 'direct.fvsm')


def test_recorded_bag_opens_in_the_offline_replay_cli(
    tmp_path: Path, tiny_cache_dir: Path
) -> None:
    if importlib.util.find_spec('flash_vstream_ros.cli') is None:
        pytest.skip('flash_vstream_ros/cli.py is not there (engine helper)')
    frames, rate = 60, 5.0
    bag = record_sim_bag(tmp_path, 88, frames)
    cmd = module_cmd(
        'flash_vstream_ros.cli', 'replay', str(bag), '--ask', 'What did you see?',
        '--max-new-tokens', '4', '--set', f'model.cache_dir={tiny_cache_dir}', '--set',
        f'engine.ingest_rate_hz={rate}', '--device', 'cpu', '--save',
        str(tmp_path / 'cli.fvsm'),
    )  # fmt: skip
    done = subprocess.run(cmd, env=ros_env(88), capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    direct_memory(tiny_cache_dir, rate, frames, tmp_path / 'direct.fvsm')
    assert_same_memory(tmp_path / 'cli.fvsm', tmp_path / 'direct.fvsm')
