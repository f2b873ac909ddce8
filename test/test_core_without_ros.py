"""The core (everything outside flash_vstream_ros/ros/) imports with ROS unavailable.

Every core module is found by walking the source tree (so a new module is covered without
editing this test) and imported in a fresh interpreter where ``rclpy``, the ROS message packages
and the generated interfaces are blocked (``sys.modules[name] = None`` makes their import fail).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / 'flash_vstream_ros'
ROS_LAYER = PACKAGE / 'ros'
BLOCKED = (
    'rclpy',
    'rclpy.node',
    'rclpy.action',
    'rclpy.serialization',
    'rosidl_runtime_py',
    'std_msgs',
    'std_srvs',
    'sensor_msgs',
    'builtin_interfaces',
    'diagnostic_msgs',
    'lifecycle_msgs',
    'action_msgs',
    'rosgraph_msgs',
    'cv_bridge',
    'launch',
    'launch_ros',
    'flash_vstream_ros.msg',
    'flash_vstream_ros.srv',
    'flash_vstream_ros.action',
)
# Top-level names whose presence in sys.modules means ROS was imported after all.
ROS_ROOTS = (
    'rclpy',
    'rcl_interfaces',
    'rosidl_',
    'rpyutils',
    'std_msgs',
    'std_srvs',
    'sensor_msgs',
    'builtin_interfaces',
    'diagnostic_msgs',
    'lifecycle_msgs',
    'action_msgs',
    'rosgraph_msgs',
    'ament_index_python',
    'cv_bridge',
    'launch_ros',
)

PROBE = """
import importlib, json, sys, traceback
blocked, modules, roots = json.loads(sys.argv[1])
for name in blocked:
    sys.modules[name] = None
failures = {}
for module in modules:
    try:
        importlib.import_module(module)
    except Exception:
        failures[module] = traceback.format_exc(limit=3)
loaded = sorted(name for name, mod in sys.modules.items()
                if mod is not None and name.split('.')[0].startswith(tuple(roots)))
loaded += sorted(name for name in ('flash_vstream_ros.msg', 'flash_vstream_ros.srv',
                                   'flash_vstream_ros.action')
                 if sys.modules.get(name) is not None)
print(json.dumps({'failures': failures, 'ros_loaded': loaded}))
"""


def core_modules() -> list[str]:
    """Dotted names of every module of the package outside ros/ (and the generated folders)."""
    names = []
    for path in sorted(PACKAGE.rglob('*.py')):
        if ROS_LAYER in path.parents or '__pycache__' in path.parts:
            continue
        parts = path.relative_to(REPO_ROOT).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        if parts[1:2] in (('msg',), ('srv',), ('action',)):
            continue
        names.append('.'.join(parts))
    return names


def test_core_modules_are_found() -> None:
    names = core_modules()
    assert {
        'flash_vstream_ros',
        'flash_vstream_ros.config',
        'flash_vstream_ros.errors',
        'flash_vstream_ros.memory.base',
        'flash_vstream_ros.models.base',
    } <= set(names)
    assert not [name for name in names if name.startswith('flash_vstream_ros.ros')]


def test_core_imports_without_rclpy() -> None:
    modules = core_modules()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    probe = subprocess.run(
        [sys.executable, '-c', PROBE, json.dumps([BLOCKED, modules, ROS_ROOTS])],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result['failures'] == {}, '\n'.join(
        f'{name}:\n{trace}' for name, trace in result['failures'].items()
    )
    assert result['ros_loaded'] == []


def test_the_probe_notices_a_ros_import() -> None:
    """The blocking works: the same probe reports an import of rclpy as a failure."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    probe = subprocess.run(
        [sys.executable, '-c', PROBE, json.dumps([BLOCKED, ['rclpy'], ROS_ROOTS])],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert list(result['failures']) == ['rclpy']
