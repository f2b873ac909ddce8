"""Helpers of the sim and bag tests: ROS executables as subprocesses on loopback, one domain."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
from pathlib import Path
import signal
import subprocess
import sys
import time

from flash_vstream_ros.ros import procs


def ros_env(domain_id: int, *, big_images: bool = False) -> dict[str, str]:
    """Environment of a ROS subprocess: our domain, loopback only, the source tree first."""
    return procs.ros_env(domain_id, big_images=big_images)


def module_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, '-m', module, *args]


@contextlib.contextmanager
def running(
    cmd: Sequence[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` (output to ``log``); at exit stop it with SIGINT, then SIGKILL."""
    with open(log, 'wb') as out:
        proc = subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """SIGINT, wait, SIGKILL if needed; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
    return proc.returncode


def wait_exit(proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> int:
    """Wait for a process that stops by itself; fail with its log when it does not."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError(
            f'{proc.args!r} did not finish in {timeout_s} s; log:\n'
            f'{log.read_text(errors="replace")[-3000:]}'
        ) from None


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    """Poll ``predicate()`` until true; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f'timed out after {timeout_s} s waiting for {what}')
