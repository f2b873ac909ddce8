"""What the bag recorder and player share: message classes, topic names and QoS in both forms.

rosbag2 metadata records each connection's offered QoS (``rosbags.interfaces.Qos``); the
recorder writes it from the publishers' rclpy profiles and the player replays with it.
"""

from __future__ import annotations

from collections.abc import Sequence
import importlib
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from flash_vstream_ros.errors import SourceError


def message_class(msgtype: str) -> Any:
    """The rclpy class of 'pkg/msg/Name' (imported from the installed interface package)."""
    try:
        pkg, kind, name = msgtype.split('/')
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise SourceError(
            f'message type {msgtype!r} is not available in this ROS environment: {exc}'
        ) from exc


def resolve(node: Node, topic: str) -> str:
    """The fully qualified name of ``topic`` for ``node`` (remaps applied where rclpy can)."""
    if hasattr(node, 'resolve_topic_name'):  # rclpy >= Iron
        return str(node.resolve_topic_name(topic))
    if topic.startswith('/'):
        return topic
    namespace = node.get_namespace().rstrip('/')
    return f'{namespace}/{topic}'


def to_bag_qos(profile: QoSProfile) -> Qos:
    """An rclpy QoS profile as rosbag2 metadata records it."""
    zero = QosTime(0, 0)
    reliable = profile.reliability == ReliabilityPolicy.RELIABLE
    durable = profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    return Qos(
        QosHistory.KEEP_LAST,
        int(profile.depth or 1),
        QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        QosDurability.TRANSIENT_LOCAL if durable else QosDurability.VOLATILE,
        zero,
        zero,
        QosLiveliness.AUTOMATIC,
        zero,
        False,
    )


def from_bag_qos(offered: Sequence[Qos], depth: int, reliability: str) -> QoSProfile:
    """The profile to replay a connection with: as offered unless ``reliability`` says so."""
    reliable = reliability == 'reliable' or (
        reliability == 'auto'
        and bool(offered)
        and all(q.reliability == QosReliability.RELIABLE for q in offered)
    )
    durable = bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if durable else DurabilityPolicy.VOLATILE,
    )
