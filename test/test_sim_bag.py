"""Bags written straight from the world (no ROS running): readable, exact, rclpy-compatible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
import yaml

from flash_vstream_ros.errors import ConfigError
from flash_vstream_ros.sim import World, WorldConfig, frame_stamp_ns, read_events
from flash_vstream_ros.sim.bag import image_cdr, typestore, write_world_bag


def ext(conn: Any) -> Any:
    """The rosbag2 extension of a connection (typed loosely)."""
    return conn.ext


pytestmark = pytest.mark.unit


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_holds_the_rendered_frames_with_their_stamps(tmp_path: Path, storage: str) -> None:
    info = write_world_bag(
        tmp_path / 'bag',
        seed=4,
        frames=20,
        fps=10.0,
        width=96,
        height=64,
        storage=storage,
        event_log=tmp_path / 'events.jsonl',
    )
    world, store = World(WorldConfig(width=96, height=64, seed=4)), typestore()
    assert info.stamps_ns == tuple(frame_stamp_ns(i, 10.0, 1_000_000_000) for i in range(20))
    with Reader(tmp_path / 'bag') as reader:
        (conn,) = reader.connections
        assert (conn.topic, conn.msgtype) == ('/image_raw', 'sensor_msgs/msg/Image')
        assert ext(conn).serialization_format == 'cdr'
        assert conn.digest.startswith('RIHS01_')
        messages = list(reader.messages())
    assert len(messages) == 20
    for index, (_, bag_ns, raw) in enumerate(messages):
        msg: Any = store.deserialize_cdr(raw, 'sensor_msgs/msg/Image')
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        assert bag_ns == stamp_ns == info.stamps_ns[index]
        image = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        assert np.array_equal(image, world.render(index / 10.0))
    frames = [r for r in read_events(tmp_path / 'events.jsonl') if r['event'] == 'frame']
    assert [r['stamp_ns'] for r in frames] == list(info.stamps_ns)


def test_bgr_and_jpeg_topics(tmp_path: Path) -> None:
    write_world_bag(
        tmp_path / 'bag',
        frames=3,
        width=64,
        height=48,
        encoding='bgr8',
        compressed_topic='/image_raw/compressed',
    )
    store = typestore()
    with Reader(tmp_path / 'bag') as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {
            '/image_raw': 'sensor_msgs/msg/Image',
            '/image_raw/compressed': 'sensor_msgs/msg/CompressedImage',
        }
        for conn, _, raw in reader.messages():
            msg: Any = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == '/image_raw':
                assert msg.encoding == 'bgr8'
            else:
                assert msg.format == 'jpeg'
                decoded: Any = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
                assert decoded.shape == (48, 64, 3)


def test_first_bgr_frame_is_the_rgb_frame_reversed(tmp_path: Path) -> None:
    write_world_bag(tmp_path / 'bag', frames=1, width=64, height=48, encoding='bgr8')
    store = typestore()
    with Reader(tmp_path / 'bag') as reader:
        ((_, _, raw),) = list(reader.messages())
    msg: Any = store.deserialize_cdr(raw, 'sensor_msgs/msg/Image')
    bgr = np.asarray(msg.data).reshape(48, 64, 3)
    assert np.array_equal(bgr[:, :, ::-1], World(WorldConfig(width=64, height=48)).render(0.0))


def test_cdr_bytes_read_the_same_in_rclpy() -> None:
    """Same length and fields both ways (CDR alignment padding bytes are unspecified)."""
    serialization = pytest.importorskip('rclpy.serialization')
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')
    image = World(WorldConfig(width=32, height=24)).render(1.0)
    ours = image_cdr(typestore(), image, 1_234_567_890_123, 'cam', 'rgb8')
    msg = serialization.deserialize_message(ours, sensor_msgs.Image)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 567_890_123)
    assert (msg.header.frame_id, msg.encoding, msg.height, msg.width, msg.step) == (
        'cam',
        'rgb8',
        24,
        32,
        96,
    )
    assert bytes(msg.data) == image.tobytes()
    theirs = serialization.serialize_message(msg)
    assert len(theirs) == len(ours)
    back: Any = typestore().deserialize_cdr(theirs, 'sensor_msgs/msg/Image')
    assert np.array_equal(np.asarray(back.data), image.reshape(-1))


def test_metadata_version_8(tmp_path: Path) -> None:
    write_world_bag(tmp_path / 'bag', frames=2, width=32, height=24, metadata_version=8)
    meta = yaml.safe_load((tmp_path / 'bag' / 'metadata.yaml').read_text())
    info = meta['rosbag2_bagfile_information']
    assert info['version'] == 8
    (topic,) = info['topics_with_message_count']
    qos = topic['topic_metadata']['offered_qos_profiles']
    assert isinstance(qos, str)  # a YAML string with integer enums, as older rosbag2 writes
    assert yaml.safe_load(qos)[0]['reliability'] == 2  # best effort
    with Reader(tmp_path / 'bag') as reader:
        assert reader.message_count == 2
    with pytest.raises(ConfigError, match='version'):
        write_world_bag(tmp_path / 'v5', frames=1, metadata_version=5)


def test_existing_folder_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    (tmp_path / 'bag').mkdir()
    with pytest.raises(Exception, match='exists'):
        write_world_bag(tmp_path / 'bag', frames=1)
    with pytest.raises(ConfigError, match='storage'):
        write_world_bag(tmp_path / 'x', frames=1, storage='rosbag1')
    with pytest.raises(ConfigError, match='frames'):
        write_world_bag(tmp_path / 'y', frames=0)
