"""The two ROS processes of bench_ros_ingest.py: a synthetic camera and a status monitor.

    python benchmarks/ros_ingest_procs.py publish --topic /image_raw --rate 30 --duration 60 \
        --result pub.json
    python benchmarks/ros_ingest_procs.py monitor --status /flash_vstream/memory_status \
        --lines status.jsonl

Each runs in its own process so that the DDS settings (ROS_DOMAIN_ID, discovery range, Fast DDS
profile) come from that process's environment, as they do for the node.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import signal
import time
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

SYNTHETIC_FRAMES = 30  # distinct frames cycled by the publisher


def synthetic_frames(width: int, height: int, count: int) -> list[bytes]:
    """``count`` rgb8 frames of a bright bar sweeping over a gradient, as raw bytes."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    base = np.stack(
        np.broadcast_arrays(x[None, :], y[:, None], (x[None, :] + y[:, None]) / 2), axis=-1
    ).astype(np.uint8)  # (H, W, 3)
    frames = []
    bar = max(width // count, 1)
    for i in range(count):
        img = base.copy()
        img[:, i * bar : (i + 1) * bar] = 255
        frames.append(img.tobytes())
    return frames


class CameraPublisher(Node):
    """Publishes rgb8 frames at a fixed rate with sensor-data (best effort) QoS."""

    def __init__(self, topic: str, rate: float, width: int, height: int) -> None:
        super().__init__('bench_camera')
        self.pub = self.create_publisher(Image, topic, qos_profile_sensor_data)
        self.frames = synthetic_frames(width, height, SYNTHETIC_FRAMES)
        self.width, self.height = width, height
        self.sent = 0
        self.publish_s = 0.0
        self.timer = self.create_timer(1.0 / rate, self.tick)

    def tick(self) -> None:
        start = time.perf_counter()
        msg = Image()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = 'bench_camera'
        msg.height, msg.width, msg.encoding = self.height, self.width, 'rgb8'
        msg.step = self.width * 3
        msg.data = self.frames[self.sent % len(self.frames)]
        self.pub.publish(msg)
        self.sent += 1
        self.publish_s += time.perf_counter() - start


def publish(args: argparse.Namespace) -> int:
    rclpy.init()
    node = CameraPublisher(args.topic, args.rate, args.width, args.height)
    start = time.monotonic()
    stop = start + args.duration
    try:
        while rclpy.ok() and time.monotonic() < stop:
            rclpy.spin_once(node, timeout_sec=0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    elapsed = time.monotonic() - start
    result = {
        'sent': node.sent,
        'elapsed_s': elapsed,
        'rate_hz': node.sent / elapsed,
        'publish_ms_mean': 1e3 * node.publish_s / max(node.sent, 1),
        'width': args.width,
        'height': args.height,
        'target_hz': args.rate,
    }
    Path(args.result).write_text(json.dumps(result))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def status_to_dict(msg: Any) -> dict[str, Any]:
    """The scalar fields of a MemoryStatus message (and its parts), as plain JSON values."""
    out: dict[str, Any] = {'t': time.time()}
    for name in msg.get_fields_and_field_types():
        value = getattr(msg, name)
        if isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif name in ('cameras', 'parts', 'part_used', 'part_capacity'):
            out[name] = [v if isinstance(v, str) else int(v) for v in value]
    return out


def diagnostics_to_dict(msg: Any) -> dict[str, Any]:
    """Key-values of every status in a DiagnosticArray: {status name: {key: value}}."""
    return {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}


def monitor(args: argparse.Namespace) -> int:
    from diagnostic_msgs.msg import DiagnosticArray

    from flash_vstream_ros.msg import MemoryStatus

    rclpy.init()
    node = Node('bench_monitor')
    lines = open(args.lines, 'a', buffering=1)  # noqa: SIM115 - closed below, line-buffered

    def on_status(msg: Any) -> None:
        lines.write(json.dumps({'kind': 'status', **status_to_dict(msg)}) + '\n')

    def on_diag(msg: Any) -> None:
        diag = diagnostics_to_dict(msg)
        if diag:
            lines.write(
                json.dumps({'kind': 'diagnostics', 't': time.time(), 'status': diag}) + '\n'
            )

    node.create_subscription(MemoryStatus, args.status, on_status, 10)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        lines.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='role', required=True)
    pub = sub.add_parser('publish', help='synthetic rgb8 camera, best effort')
    pub.add_argument('--topic', default='/image_raw')
    pub.add_argument('--rate', type=float, default=30.0)
    pub.add_argument('--duration', type=float, default=60.0)
    pub.add_argument('--width', type=int, default=640)
    pub.add_argument('--height', type=int, default=480)
    pub.add_argument('--result', required=True, help='JSON file written at the end')
    mon = sub.add_parser('monitor', help='record ~/memory_status and /diagnostics as JSON lines')
    mon.add_argument('--status', default='/flash_vstream/memory_status')
    mon.add_argument('--lines', required=True)
    args = parser.parse_args(argv)
    return publish(args) if args.role == 'publish' else monitor(args)


if __name__ == '__main__':
    raise SystemExit(main())
