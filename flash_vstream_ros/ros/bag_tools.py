"""Record camera topics to a rosbag2 folder and play a bag back as topics, without rosbag2.

Executable ``flash_vstream_bag`` (``ros2 bag`` is not installable from the pip wheels; on a ROS
distro ``ros2 bag record`` / ``ros2 bag play --clock`` do the same and their bags work too):

    flash_vstream_bag record OUT [--topics image_raw ...] [--storage mcap|sqlite3]
                                 [--max-messages N] [--duration S]
    flash_vstream_bag play BAG [--rate 1.0] [--loop] [--start-offset S] [--topics ...]
                               [--clock-hz 100] [--no-clock] [--wait-subscribers N]

Both move serialized CDR bytes only: ``record`` subscribes with ``raw=True`` and writes the
bytes with the ``rosbags`` writer (topic type, ``cdr`` and the publishers' offered QoS in the
metadata); ``play`` publishes the bytes as they are, at the recorded pace (scaled by
``--rate``), and publishes ``/clock`` (rosgraph_msgs/Clock) with the bag time so that nodes
with ``use_sim_time:=true`` follow the bag. Append ``--ros-args ...`` for ROS arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
import sys
import time
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from rosbags.interfaces import (
    Connection,
    QosReliability,
)
from rosbags.rosbag2 import Reader, ReaderError, Writer, WriterError
from rosgraph_msgs.msg import Clock

from flash_vstream_ros.errors import ConfigError, SourceError
from flash_vstream_ros.ros.bag_common import from_bag_qos, message_class, resolve, to_bag_qos
from flash_vstream_ros.ros.compat import guard_teardown, stopped_by_shutdown
from flash_vstream_ros.sim.bag import bag_version, storage_plugin, typestore

TEARDOWN_S = 10.0  # how long the recorder may take to leave ROS once its bag is closed

# --------------------------------------------------------------------------- record


class Recorder(Node):
    """Subscribes to topics (raw bytes) and writes every message to an open bag writer."""

    def __init__(
        self,
        writer: Writer,
        topics: Sequence[str],
        *,
        depth: int = 100,
        discovery_timeout_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__('flash_vstream_bag_recorder', **kwargs)
        self.writer = writer
        self.store = typestore()
        self.count = 0
        self.counts: dict[str, int] = {}
        self._subs: list[Any] = []
        deadline = time.monotonic() + discovery_timeout_s
        for topic in topics:
            self._subscribe(resolve(self, topic), depth, deadline)

    def _subscribe(self, topic: str, depth: int, deadline: float) -> None:
        msgtype, publishers = self._discover(topic, deadline)
        offered = [to_bag_qos(p.qos_profile) for p in publishers]
        reliable = all(q.reliability == QosReliability.RELIABLE for q in offered)
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        if msgtype not in self.store.types:
            raise SourceError(
                f'cannot record {topic}: type {msgtype!r} is unknown to the rosbags typestore'
            )
        conn = self.writer.add_connection(
            topic,
            msgtype,
            typestore=self.store,
            serialization_format='cdr',
            offered_qos_profiles=offered,
        )
        self.counts[topic] = 0
        self._subs.append(
            self.create_subscription(
                message_class(msgtype),
                topic,
                lambda raw, c=conn: self._write(c, raw),
                qos,
                raw=True,
            )
        )
        self.get_logger().info(
            f'recording {topic} ({msgtype}, {"reliable" if reliable else "best effort"})'
        )

    def _discover(self, topic: str, deadline: float) -> tuple[str, list[Any]]:
        while True:
            types = dict(self.get_topic_names_and_types())
            publishers = self.get_publishers_info_by_topic(topic)
            if topic in types and publishers:
                return types[topic][0], publishers
            if time.monotonic() > deadline:
                raise SourceError(
                    f'no publisher of {topic} appeared; seen topics: {sorted(types)}'
                )
            time.sleep(0.1)

    def _write(self, conn: Connection, raw: bytes) -> None:
        self.writer.write(conn, self.get_clock().now().nanoseconds, raw)
        self.count += 1
        self.counts[conn.topic] += 1


def record(args: argparse.Namespace, ros_args: list[str]) -> int:
    writer = Writer(
        Path(args.output),
        version=bag_version(args.metadata_version),
        storage_plugin=storage_plugin(args.storage),
    )
    writer.open()
    node: Recorder | None = None
    try:
        rclpy.init(args=ros_args)
        node = Recorder(writer, args.topics, discovery_timeout_s=args.discovery_timeout)
        end = time.monotonic() + args.duration if args.duration > 0 else None
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.05)
            if args.max_messages and node.count >= args.max_messages:
                break
            if end is not None and time.monotonic() >= end:
                break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if not stopped_by_shutdown():  # see compat.stopped_by_shutdown
            raise
    finally:
        writer.close()
        guard_teardown(TEARDOWN_S, 'flash_vstream_bag record')  # the bag is complete now
        if node is not None:
            node.get_logger().info(
                f'wrote {node.count} message(s) to {args.output}: {node.counts}'
            )
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


# --------------------------------------------------------------------------- play


class Player(Node):
    """Publishes a bag's raw messages at the recorded pace, with /clock from the bag time."""

    def __init__(self, reader: Reader, args: argparse.Namespace, **kwargs: Any) -> None:
        super().__init__('flash_vstream_bag_player', **kwargs)
        self.reader, self.args = reader, args
        wanted = {resolve(self, t) for t in args.topics} if args.topics else None
        self.connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not self.connections:
            raise SourceError(
                f'bag {args.bag} has none of the topics {sorted(wanted or [])}; '
                f'it has {sorted({c.topic for c in reader.connections})}'
            )
        self.pubs: dict[int, Any] = {}
        for conn in self.connections:
            qos = from_bag_qos(
                conn.ext.offered_qos_profiles,  # type: ignore[union-attr]
                args.depth,
                args.reliability,
            )
            self.pubs[conn.id] = self.create_publisher(
                message_class(conn.msgtype), conn.topic, qos
            )
        self.clock_pub = (
            None
            if args.no_clock
            else self.create_publisher(
                Clock, '/clock', QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
            )
        )
        self.published = 0

    def wait_for_subscribers(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while min(p.get_subscription_count() for p in self.pubs.values()) < count:
            if time.monotonic() > deadline:
                raise SourceError(f'fewer than {count} subscriber(s) after {timeout_s} s')
            time.sleep(0.05)

    def publish_clock(self, bag_ns: int) -> None:
        if self.clock_pub is not None:
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(bag_ns, 1_000_000_000)
            self.clock_pub.publish(msg)

    def play_once(self) -> None:
        """One pass over the bag from the start offset; returns at its end."""
        start, _ = self._bounds()
        first = start + int(self.args.start_offset * 1e9)
        wall0 = time.monotonic()
        clock_step = 1.0 / self.args.clock_hz if self.args.clock_hz > 0 else None
        for conn, bag_ns, raw in self.reader.messages(self.connections, start=first):
            self._wait_until(
                wall0 + (bag_ns - first) / 1e9 / self.args.rate, first, wall0, clock_step
            )
            self.publish_clock(bag_ns)
            self.pubs[conn.id].publish(raw)  # serialized bytes as recorded, not deserialised
            self.published += 1

    def _bounds(self) -> tuple[int, int]:
        return self.reader.start_time, self.reader.end_time

    def _wait_until(
        self, target: float, first: int, wall0: float, clock_step: float | None
    ) -> None:
        while True:
            now = time.monotonic()
            if now >= target or not rclpy.ok():
                return
            step = min(target - now, clock_step or target - now)
            time.sleep(step)
            if clock_step is not None and time.monotonic() < target:
                elapsed = (time.monotonic() - wall0) * self.args.rate
                self.publish_clock(first + int(elapsed * 1e9))

    def flush(self, timeout_s: float = 15.0) -> None:
        """Wait for reliable subscribers to acknowledge the last messages (a writer that
        exits first loses them; 2 s was too short on a loaded machine)."""
        for pub in self.pubs.values():
            pub.wait_for_all_acked(Duration(seconds=timeout_s))


def play(args: argparse.Namespace, ros_args: list[str]) -> int:
    if args.rate <= 0.0:
        raise ConfigError(f'--rate must be > 0, got {args.rate}')
    if not Path(args.bag).exists():
        raise SourceError(f'bag {args.bag} does not exist')
    node: Player | None = None
    with Reader(Path(args.bag)) as reader:
        try:
            rclpy.init(args=ros_args)
            node = Player(reader, args)
            if args.wait_subscribers:
                node.wait_for_subscribers(args.wait_subscribers, args.discovery_timeout)
            while rclpy.ok():
                node.play_once()
                if not args.loop:
                    break
            node.flush()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:
            # SIGINT shuts the context down at any moment, so a publish in flight then fails
            # ("publisher's context is invalid"): that is the stop asked for, not an error
            if not stopped_by_shutdown():
                raise
        finally:
            if node is not None:
                node.get_logger().info(f'published {node.published} message(s)')
                node.destroy_node()
            rclpy.try_shutdown()
    return 0


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog='flash_vstream_bag', description=__doc__.split('\n')[0])
    sub = top.add_subparsers(dest='command', required=True)
    rec = sub.add_parser('record', help='record topics to a new rosbag2 folder')
    rec.add_argument('output', help='bag folder to create (must not exist)')
    rec.add_argument(
        '--topics',
        nargs='+',
        default=['image_raw'],
        help='topics to record (relative names resolve in the node namespace)',
    )
    rec.add_argument('--storage', default='mcap', choices=('mcap', 'sqlite3'))
    rec.add_argument(
        '--metadata-version',
        type=int,
        default=9,
        choices=(8, 9),
        help='rosbag2 metadata.yaml version (8: QoS as a YAML string)',
    )
    rec.add_argument('--max-messages', type=int, default=0, help='stop after N messages')
    rec.add_argument('--duration', type=float, default=0.0, help='stop after S seconds')
    rec.add_argument(
        '--discovery-timeout',
        type=float,
        default=10.0,
        help='seconds to wait for the topics to appear',
    )
    ply = sub.add_parser('play', help='publish a bag (MCAP or sqlite3) with /clock')
    ply.add_argument('bag', help='rosbag2 folder')
    ply.add_argument('--rate', type=float, default=1.0, help='speed factor (2 = twice as fast)')
    ply.add_argument('--loop', action='store_true', help='start over at the end')
    ply.add_argument(
        '--start-offset', type=float, default=0.0, help='skip the first S seconds of the bag'
    )
    ply.add_argument('--topics', nargs='+', default=None, help='only these topics')
    ply.add_argument(
        '--clock-hz',
        type=float,
        default=100.0,
        help='/clock rate between messages (0: only with each message)',
    )
    ply.add_argument('--no-clock', action='store_true', help='do not publish /clock')
    ply.add_argument(
        '--reliability',
        default='auto',
        choices=('auto', 'reliable', 'best_effort'),
        help='publisher reliability (auto: as the bag offered)',
    )
    ply.add_argument('--depth', type=int, default=10, help='publisher queue depth')
    ply.add_argument(
        '--wait-subscribers',
        type=int,
        default=0,
        help='wait until every topic has N subscribers before playing',
    )
    ply.add_argument(
        '--discovery-timeout',
        type=float,
        default=30.0,
        help='seconds to wait for --wait-subscribers',
    )
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    args = parser().parse_args(remove_ros_args(argv)[1:])
    try:
        return record(args, argv) if args.command == 'record' else play(args, argv)
    except (ConfigError, SourceError, ReaderError, WriterError) as exc:
        print(f'flash_vstream_bag: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
