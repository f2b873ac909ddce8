"""Write a rosbag2 folder straight from the synthetic world, without ROS running.

``rosbags`` serialises ``sensor_msgs/msg/Image`` (and ``CompressedImage``) to the same CDR bytes
rclpy would, with the same type hash, so the bag plays through ROS (``flash_vstream_bag play``,
``ros2 bag play``) and reads in the offline replay CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from flash_vstream_ros.errors import ConfigError
from flash_vstream_ros.sim.events import EventLog
from flash_vstream_ros.sim.world import World, WorldConfig, frame_stamp_ns

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
ENCODINGS = ('rgb8', 'bgr8')


@dataclass(frozen=True)
class BagInfo:
    """What :func:`write_world_bag` wrote."""

    path: str
    frames: int
    stamps_ns: tuple[int, ...]  # header stamp (= bag time) of every frame


def typestore() -> Typestore:
    """The message definitions of the ROS distro the wheels are built from (Kilted)."""
    return get_typestore(Stores.ROS2_KILTED)


def sensor_qos(reliable: bool = False, depth: int = 5) -> Qos:
    """The offered QoS a camera driver advertises (sensor data: best effort, keep last)."""
    zero = QosTime(0, 0)
    return Qos(
        QosHistory.KEEP_LAST,
        depth,
        QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        QosDurability.VOLATILE,
        zero,
        zero,
        QosLiveliness.AUTOMATIC,
        zero,
        False,
    )


def bag_version(version: int) -> Literal[8, 9]:
    """rosbag2 metadata version: 9 (Jazzy and newer) or 8 (QoS profiles as a YAML string)."""
    if version == 8:
        return 8
    if version == 9:
        return 9
    raise ConfigError(f'bag metadata version must be 8 or 9, got {version!r}')


def storage_plugin(storage: str) -> StoragePlugin:
    try:
        return STORAGES[storage]
    except KeyError:
        raise ConfigError(
            f'unknown bag storage {storage!r}; use one of {list(STORAGES)}'
        ) from None


def image_cdr(
    store: Typestore, image: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = 'rgb8'
) -> bytes:
    """CDR bytes of a sensor_msgs/Image holding an RGB (H, W, 3) uint8 image."""
    if encoding not in ENCODINGS:
        raise ConfigError(f'unknown encoding {encoding!r}; use one of {list(ENCODINGS)}')
    pixels = image[:, :, ::-1] if encoding == 'bgr8' else image
    h, w = image.shape[:2]
    msg = store.types[IMAGE](
        header=_header(store, stamp_ns, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * 3,
        data=np.frombuffer(np.ascontiguousarray(pixels).tobytes(), np.uint8),
    )
    return bytes(store.serialize_cdr(msg, IMAGE))


def jpeg_cdr(
    store: Typestore, image: np.ndarray, stamp_ns: int, frame_id: str, quality: int = 90
) -> bytes:
    """CDR bytes of a sensor_msgs/CompressedImage (jpeg) of an RGB image."""
    ok, buf = cv2.imencode('.jpg', image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ConfigError(f'JPEG encoding failed for an image of shape {image.shape}')
    msg = store.types[COMPRESSED](
        header=_header(store, stamp_ns, frame_id),
        format='jpeg',
        data=np.asarray(buf, np.uint8).reshape(-1),
    )
    return bytes(store.serialize_cdr(msg, COMPRESSED))


def _header(store: Typestore, stamp_ns: int, frame_id: str) -> Any:
    stamp = store.types['builtin_interfaces/msg/Time'](
        sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
    )
    return store.types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def write_world_bag(
    path: str | Path,
    *,
    seed: int = 0,
    frames: int = 100,
    fps: float = 30.0,
    width: int = 320,
    height: int = 240,
    topic: str = '/image_raw',
    compressed_topic: str = '',
    encoding: str = 'rgb8',
    storage: str = 'mcap',
    frame_id: str = 'sim_camera',
    start_ns: int = 1_000_000_000,
    jpeg_quality: int = 90,
    event_log: str | Path | None = None,
    world: WorldConfig | None = None,
    metadata_version: int = 9,
) -> BagInfo:
    """Render ``frames`` frames of the world (seed, size) at ``fps`` into a new bag folder.

    Frame i has world time i / fps and header stamp = bag time = frame_stamp_ns(i, fps,
    start_ns). ``world`` overrides the world settings (its seed and size win over the
    arguments). ``compressed_topic`` adds a jpeg CompressedImage topic; an empty ``topic``
    leaves the raw topic out.
    """
    if frames < 1 or fps <= 0.0:
        raise ConfigError(f'write_world_bag needs frames >= 1 and fps > 0, got {frames}, {fps}')
    if not topic and not compressed_topic:
        raise ConfigError('write_world_bag needs a topic or a compressed_topic')
    cfg = world or WorldConfig(width=width, height=height, seed=seed)
    scene, store = World(cfg), typestore()
    stamps = tuple(frame_stamp_ns(i, fps, start_ns) for i in range(frames))
    writer = Writer(
        Path(path), version=bag_version(metadata_version), storage_plugin=storage_plugin(storage)
    )
    with writer, EventLog(event_log, scene) as log:
        raw = (
            writer.add_connection(
                topic, IMAGE, typestore=store, offered_qos_profiles=[sensor_qos()]
            )
            if topic
            else None
        )
        jpg = (
            writer.add_connection(
                compressed_topic, COMPRESSED, typestore=store, offered_qos_profiles=[sensor_qos()]
            )
            if compressed_topic
            else None
        )
        for index, stamp in enumerate(stamps):
            frame = scene.observe(index / fps)
            if raw is not None:
                writer.write(raw, stamp, image_cdr(store, frame.image, stamp, frame_id, encoding))
            if jpg is not None:
                writer.write(
                    jpg, stamp, jpeg_cdr(store, frame.image, stamp, frame_id, jpeg_quality)
                )
            log.add(frame, index, stamp)
    return BagInfo(path=str(path), frames=frames, stamps_ns=stamps)
