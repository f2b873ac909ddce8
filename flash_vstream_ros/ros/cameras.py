"""The node's camera inputs: one subscription per topic, callbacks that convert and hand over.

Image callbacks only convert and hand the frame to the engine (which never blocks); stamps are
the message header stamps as they are (so ``use_sim_time`` and bag replays work; a zero stamp is
replaced by the node clock's now). A malformed message is counted as rejected with a throttled
warning and never reaches the engine. Camera names: see flash_vstream_ros.ros.convert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import functools
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from sensor_msgs.msg import CompressedImage, Image

from flash_vstream_ros.config import AppConfig
from flash_vstream_ros.engine import Engine
from flash_vstream_ros.errors import BadFrameError, FlashVStreamError, NotReadyError
from flash_vstream_ros.ros.compat import resolve_topic, topic_of
from flash_vstream_ros.ros.convert import camera_name
from flash_vstream_ros.ros.images import compressed_to_rgb, image_to_rgb
from flash_vstream_ros.ros.stamps import is_zero, to_ns

Converter = Callable[[Any, int], np.ndarray]
Warn = Callable[[str, str], None]  # (kind, text): a throttled warning


@dataclass
class CameraFeed:
    """What one camera subscription's callback needs."""

    camera: str  # set once the subscription's real (remapped) topic name is known
    convert: Converter
    max_side: int


def camera_entries(node: Node, config: AppConfig) -> list[tuple[str, str, Any, Converter]]:
    """(topic, camera, message type, converter) per subscribed topic; duplicates refused."""
    entries: list[tuple[str, str, Any, Converter]] = []
    for topics, msg_type, convert in (
        (config.ros.image_topics, Image, image_to_rgb),
        (config.ros.compressed_topics, CompressedImage, compressed_to_rgb),
    ):
        for topic in topics:
            camera = camera_name(resolve_topic(node, topic), node.get_namespace())
            entries.append((topic, camera, msg_type, convert))
    names = [camera for _, camera, _, _ in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise FlashVStreamError(
            f'camera topics give duplicate camera names {duplicates}: subscribe each topic once'
        )
    return entries


def camera_qos(config: AppConfig) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=config.ros.qos_depth,
        reliability=(
            ReliabilityPolicy.BEST_EFFORT
            if config.ros.qos_reliability == 'best_effort'
            else ReliabilityPolicy.RELIABLE
        ),
    )


class CameraInputs:
    """The camera subscriptions of one node, created at activate and destroyed at deactivate."""

    def __init__(self, node: Node, engine: Callable[[], Engine | None], warn: Warn) -> None:
        self._node = node
        self._engine = engine
        self._warn = warn
        self._subs: list[Subscription[Any]] = []

    def subscribe(self, config: AppConfig) -> None:
        node = self._node
        qos = camera_qos(config)
        max_side = config.engine.max_image_side
        if not config.ros.image_topics and not config.ros.compressed_topics:
            node.get_logger().warning(
                'no camera topics (ros.image_topics and ros.compressed_topics are empty): '
                'answering from the loaded memory only'
            )
        for topic, _, msg_type, convert in camera_entries(node, config):
            feed = CameraFeed('', convert, max_side)
            # One group per camera: its frames arrive in order; cameras run in parallel.
            sub = node.create_subscription(
                msg_type,
                topic,
                functools.partial(self._on_image, feed),
                qos,
                callback_group=MutuallyExclusiveCallbackGroup(),
            )
            self._subs.append(sub)
            name = topic_of(node, sub, topic)  # after remapping, on every rclpy release
            feed.camera = camera_name(name, node.get_namespace())
            node.get_logger().info(
                f'camera {feed.camera!r}: {name} ({msg_type.__name__}, '
                f'{config.ros.qos_reliability})'
            )

    def unsubscribe(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            self._node.destroy_subscription(sub)

    def _on_image(self, feed: CameraFeed, msg: Any) -> None:
        camera = feed.camera
        engine = self._engine()
        if engine is None:
            return
        try:
            rgb = feed.convert(msg, feed.max_side)
        except BadFrameError as exc:
            engine.reject_frame(str(exc))
            self._warn('bad_frame', f'camera {camera!r}: frame rejected: {exc}')
            return
        except Exception as exc:  # never let a malformed message kill the node
            engine.reject_frame(f'{type(exc).__name__}: {exc}')
            self._warn(
                'bad_frame', f'camera {camera!r}: frame rejected: {type(exc).__name__}: {exc}'
            )
            return
        stamp = msg.header.stamp
        ns = self._node.get_clock().now().nanoseconds if is_zero(stamp) else to_ns(stamp)
        try:
            engine.submit_frame(rgb, ns, camera)
        except BadFrameError as exc:  # counted by the engine
            self._warn('bad_frame', f'camera {camera!r}: frame rejected: {exc}')
        except NotReadyError:
            pass  # the engine is being stopped; frames in flight are dropped
