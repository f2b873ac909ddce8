"""The package's ROS executables as subprocesses on loopback-only DDS (tests, suites, tools).

What the ros-tier tests, the reliability suite and the benchmarks share: an environment that
keeps DDS on 127.0.0.1 in a private domain (the Fast DDS profile in ``config/`` passes 640x480
frames best effort), a params file from the config tree, and a process handle that stops by
PID (SIGINT, then SIGKILL). Imports no rclpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import Any

from flash_vstream_ros.config import AppConfig, dump_ros_params, with_overrides

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout (or site-packages)
PROFILE = SOURCE_ROOT / 'config' / 'fastdds_loopback.xml'


def ros_env(domain_id: int, *, big_images: bool = True) -> dict[str, str]:
    """Environment of a ROS subprocess: own domain, loopback-only DDS, offline, one thread.

    ``big_images`` uses the Fast DDS loopback profile (16 MB shared memory, UDP on 127.0.0.1);
    otherwise discovery is limited to the machine (small messages only).
    """
    env = dict(os.environ)
    path = os.pathsep.join([str(SOURCE_ROOT), env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    env.update(
        {
            'ROS_DOMAIN_ID': str(domain_id),
            'PYTHONPATH': path,  # the source tree wins over an installed copy
            'PYTHONUNBUFFERED': '1',
            'OMP_NUM_THREADS': env.get('OMP_NUM_THREADS', '1'),
            'HF_HUB_OFFLINE': '1',
            'TRANSFORMERS_OFFLINE': '1',
        }
    )
    if big_images and PROFILE.is_file():
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(PROFILE)
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SYSTEM_DEFAULT'  # the profile keeps loopback
    else:
        env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    return env


def write_params(path: Path, overrides: dict[str, Any]) -> Path:
    """A ROS params file of the config defaults with dotted-name overrides."""
    path.write_text(dump_ros_params(with_overrides(AppConfig(), overrides)))
    return path


@dataclass
class Proc:
    """A subprocess with its output in a log file."""

    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors='replace')

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        """Send ``sig`` to this PID and wait; SIGKILL after ``timeout`` (return code -9)."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return int(self.popen.returncode)


def start(args: list[str], domain_id: int, log: Path) -> Proc:
    """Start ``args`` in the checkout with :func:`ros_env`, output to ``log``."""
    with log.open('wb') as out:
        popen = subprocess.Popen(
            args, cwd=SOURCE_ROOT, env=ros_env(domain_id), stdout=out, stderr=subprocess.STDOUT
        )
    return Proc(popen, log)


def start_node(params: Path, domain_id: int, log: Path, ros_args: tuple[str, ...] = ()) -> Proc:
    """The flash_vstream node with a params file (and e.g. ``('-r', '__ns:=/robot1')``)."""
    args = [sys.executable, '-m', 'flash_vstream_ros.ros.node', '--ros-args']
    return start([*args, '--params-file', str(params), *ros_args], domain_id, log)


def start_camera(domain_id: int, log: Path, **params: object) -> Proc:
    """The synthetic camera with ``-p name:=value`` parameters."""
    args = [sys.executable, '-m', 'flash_vstream_ros.ros.sim_camera', '--ros-args']
    for name, value in params.items():
        args += ['-p', f'{name}:={value}']
    return start(args, domain_id, log)


def poll(predicate: Callable[[], bool], timeout: float, period: float = 0.05) -> bool:
    """Call ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(period)
    return True
