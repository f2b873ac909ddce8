"""Window questions through ROS: evidence inside the window, stamps exact to the nanosecond.

The node runs as a subprocess with the tiny model; the test publishes frames itself (reliable
QoS, every frame kept) with header stamps 1000.0 + 0.1 i s, i.e. 1000 s and i * 100,000,000 ns,
plus a frame stamped 1796190000.123456789 s on a second camera (a float second would make it
...123456768). Counts are never compared exactly: only what the memory holds is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import time
from typing import Any

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from sensor_msgs.msg import Image

from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.ros.stamps import to_ns
from flash_vstream_ros.srv import Ask

from _ros_node_helpers import (  # isort: skip
    NODE_START_S,
    Client,
    Proc,
    poll_until,
    start_node,
    wait_for,
    write_params,
)

pytestmark = pytest.mark.ros

DOMAIN_ID = 81
NODE = '/flash_vstream'
STATUS = f'{NODE}/memory_status'
FRONT, ODD = '/front/image_raw', '/odd/image_raw'
FRAMES = 60  # 1000.0 .. 1005.9 s
S = 1_000_000_000
ODD_STAMP = 1_796_190_000_123_456_789


def stamp_of(i: int) -> int:
    return 1000 * S + i * 100_000_000


def image(stamp_ns: int, value: int) -> Image:
    msg = Image(height=48, width=64, encoding='rgb8', step=64 * 3, is_bigendian=0)
    rng = np.random.default_rng(value)
    scene = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)  # a new scene every 10 frames
    msg.data = scene.tobytes()
    msg.header.stamp = Time(sec=stamp_ns // S, nanosec=stamp_ns % S)
    return msg


@pytest.fixture(scope='module')
def node(tmp_path_factory: pytest.TempPathFactory, tiny_cache_dir: Path) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp('windows')
    params = write_params(
        tmp / 'params.yaml',
        {
            'model.cache_dir': str(tiny_cache_dir),
            'model.device': 'cpu',
            'engine.ingest_rate_hz': 0.0,
            # all FRAMES fit the queue: published at 50 Hz they outrun the encoder on a loaded
            # machine, and the default 8 (drop-oldest) left fewer than 3/4 of them in memory
            'engine.frame_queue_size': 2 * FRAMES,
            'generation.max_new_tokens': 2,
            'ros.image_topics': [FRONT, ODD],
            'ros.compressed_topics': [],
            'ros.qos_reliability': 'reliable',
            'ros.qos_depth': 100,
            'ros.status_period_s': 0.5,
        },
    )
    proc = start_node(params, DOMAIN_ID, tmp / 'node.log')
    try:
        yield proc
    finally:
        proc.stop(timeout=10.0)


@pytest.fixture(scope='module')
def client(node: Proc) -> Iterator[Client]:
    c = Client(DOMAIN_ID)
    c.subscribe(MemoryStatus, STATUS)
    try:
        publish_frames(c, node)
        yield c
    finally:
        c.close()


def publish_frames(c: Client, node: Proc) -> None:
    front = c.on_executor(lambda: c.node.create_publisher(Image, FRONT, 100))
    odd = c.on_executor(lambda: c.node.create_publisher(Image, ODD, 10))
    try:
        wait_for(lambda: front.get_subscription_count() > 0, NODE_START_S, f'the node on {FRONT}')
        wait_for(lambda: odd.get_subscription_count() > 0, NODE_START_S, f'the node on {ODD}')
        for i in range(FRAMES):
            front.publish(image(stamp_of(i), i // 10))
            time.sleep(0.02)
        poll_until(
            lambda: c.messages(STATUS)[-1] if c.messages(STATUS) else None,
            lambda s: s is not None and s.frames_ingested >= FRAMES * 3 // 4,
            120.0,
            f'most of {FRAMES} frames ingested; node log:\n{node.text()[-3000:]}',
        )

        def odd_arrived() -> bool:  # repeat the one frame until the memory holds it
            odd.publish(image(ODD_STAMP, 99))
            time.sleep(0.5)
            s = c.messages(STATUS)[-1] if c.messages(STATUS) else None
            return s is not None and 'odd_image_raw' in s.cameras

        wait_for(odd_arrived, 60.0, 'the odd-stamped frame in memory')
    finally:
        c.on_executor(lambda: c.node.destroy_publisher(front))
        c.on_executor(lambda: c.node.destroy_publisher(odd))


def ask(c: Client, **fields: Any) -> Any:
    request = Ask.Request(question='what happened?', temperature=0.0)
    for name, value in fields.items():
        setattr(request, name, value)
    response = c.call(Ask, f'{NODE}/ask', request)
    assert response.success, response.error_message
    return response


def test_window_evidence_lies_inside_the_window(client: Client) -> None:
    lo, hi = 1000 * S, 1002 * S + S // 2  # [1000, 1002.5]
    response = ask(
        client,
        window_start=Time(sec=1000),
        window_end=Time(sec=1002, nanosec=500_000_000),
        cameras=['front_image_raw'],
    )
    assert response.evidence
    for ev in response.evidence:
        assert lo <= to_ns(ev.start) <= to_ns(ev.end) <= hi, ev
        assert ev.part not in ('temporal', 'abstract'), ev  # whole-history parts never come
    published = {stamp_of(i) for i in range(FRAMES)}
    frames = [ev for ev in response.evidence if ev.weight == 1.0]
    assert frames
    assert {to_ns(ev.stamp) for ev in frames} <= published  # the header stamps, exactly


def test_last_seconds_read_only_the_newest_frames(client: Client) -> None:
    response = ask(client, window_last_s=1.0, cameras=['front_image_raw'])
    newest = max(to_ns(ev.end) for ev in response.evidence)
    assert newest <= stamp_of(FRAMES - 1)
    assert all(to_ns(ev.start) >= newest - S for ev in response.evidence)


def test_an_odd_stamp_comes_back_to_the_nanosecond(client: Client) -> None:
    response = ask(client, cameras=['odd_image_raw'])
    assert {to_ns(ev.stamp) for ev in response.evidence} == {ODD_STAMP}
    status = client.latest(STATUS)
    assert to_ns(status.newest_stamp) == ODD_STAMP
    window = ask(
        client,
        window_start=Time(sec=ODD_STAMP // S, nanosec=ODD_STAMP % S),
        window_end=Time(sec=ODD_STAMP // S, nanosec=ODD_STAMP % S),
    )
    assert {to_ns(ev.stamp) for ev in window.evidence} == {ODD_STAMP}
