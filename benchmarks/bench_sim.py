"""Synthetic camera speed: render, ground truth, message building, and 30 Hz over DDS.

Part 1 (no ROS): median and p95 milliseconds per frame of ``World.render`` (image only),
``World.observe`` (image + ground truth), ``tobytes`` for the Image message and the rosbags CDR
serialisation a bag writer pays, at three resolutions, with the share of a 30 Hz frame budget
(33.3 ms) that render + message take.

Part 2 (``--dds``, needs rclpy): the sim camera process publishing 640x480 rgb8 best effort at
30 Hz to a subscriber in this process, with the Fast DDS loopback profile (16 MB SHM, the brief's
fix) and without it (default LOCALHOST discovery): frames received of frames sent, achieved rate.

    python benchmarks/bench_sim.py            # part 1
    python benchmarks/bench_sim.py --dds      # parts 1 and 2 (about 30 s)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
import os
from pathlib import Path
import statistics
import subprocess
import sys
import time

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flash_vstream_ros.sim import World, WorldConfig  # noqa: E402
from flash_vstream_ros.sim.bag import image_cdr, typestore  # noqa: E402

SIZES = ((320, 240), (640, 480), (1280, 720))
BUDGET_MS = 1000.0 / 30.0


def timed(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """Median and p95 milliseconds of fn(i) over n calls (after 10 warm-up calls)."""
    for i in range(10):
        fn(i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (n - 1))]


def _at_frame(fn: Callable[[float], object], index: int) -> object:
    return fn(index / 30.0)


def _ignore_index(fn: Callable[[], object], _index: int) -> object:
    return fn()


def part_render(frames: int) -> None:
    store = typestore()
    print(f'{"size":>10} {"render ms":>16} {"observe ms":>16} {"tobytes ms":>12} '
          f'{"bag CDR ms":>12} {"render+msg / 33.3 ms":>21}')  # fmt: skip
    for w, h in SIZES:
        world = World(WorldConfig(width=w, height=h))
        image = world.render(0.0)
        render = timed(partial(_at_frame, world.render), frames)
        observe = timed(partial(_at_frame, world.observe), frames)
        tobytes = timed(partial(_ignore_index, image.tobytes), frames)
        cdr = timed(partial(_ignore_index, partial(image_cdr, store, image, 0, 'cam')),
                    max(20, frames // 5))  # fmt: skip
        share = (render[0] + tobytes[0]) / BUDGET_MS
        print(f'{w:>5}x{h:<4} {render[0]:>7.2f} (p95 {render[1]:>4.2f}) '
              f'{observe[0]:>7.2f} (p95 {observe[1]:>4.2f}) {tobytes[0]:>12.2f} '
              f'{cdr[0]:>12.2f} {share:>20.1%}')  # fmt: skip


TRANSPORTS = {
    'profile': ('Fast DDS loopback profile', {
        'FASTDDS_DEFAULT_PROFILES_FILE': str(REPO / 'config' / 'fastdds_loopback.xml'),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SYSTEM_DEFAULT'}),
    'default': ('default (LOCALHOST, 512 KB SHM)', {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}),
}  # fmt: skip


def part_dds(frames: int, domain_id: int) -> None:
    """Each transport in a fresh process (Fast DDS reads its XML profile once per process)."""
    print(f'\n640x480 rgb8, best effort, 30 Hz, {frames} frames sent')
    print(f'{"transport":>34} {"received":>10} {"lost":>7} {"rate Hz":>8}')
    for key, (_, extra) in TRANSPORTS.items():
        env = {**os.environ, 'ROS_DOMAIN_ID': str(domain_id), 'PYTHONPATH': str(REPO), **extra}
        if key == 'default':
            env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
        cmd = [sys.executable, __file__, '--dds-child', key, '--frames', str(frames)]
        subprocess.run(cmd, env=env, check=True)


def dds_child(key: str, frames: int) -> None:
    """Subscribe in this process, run the sim camera as a child, print one table row."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('bench_viewer')
    arrivals: list[float] = []

    def keep(_msg: Image) -> None:
        arrivals.append(time.monotonic())

    node.create_subscription(Image, '/image_raw', keep, qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    cmd = [sys.executable, '-m', 'flash_vstream_ros.ros.sim_camera', '--ros-args', '-p',
           f'max_frames:={frames}', '-p', 'wait_subscribers:=1']  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + frames / 30.0 + 30.0
    while proc.poll() is None and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)
    for _ in range(50):
        executor.spin_once(timeout_sec=0.01)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    n = len(arrivals)
    rate = (n - 1) / (arrivals[-1] - arrivals[0]) if n > 1 else 0.0
    print(f'{TRANSPORTS[key][0]:>34} {n:>10} {frames - n:>7} {rate:>8.1f}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--frames', type=int, default=300, help='frames per measurement')
    parser.add_argument('--dds', action='store_true', help='also publish over DDS (rclpy)')
    parser.add_argument('--domain-id', type=int, default=89)
    parser.add_argument('--dds-child', choices=sorted(TRANSPORTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dds_child:
        dds_child(args.dds_child, args.frames)
        return 0
    part_render(args.frames)
    if args.dds:
        part_dds(args.frames, args.domain_id)
    return 0


if __name__ == '__main__':
    sys.exit(main())
