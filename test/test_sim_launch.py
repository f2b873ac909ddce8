"""launch/sim_demo.launch.py: its data here, the description only where launch_ros exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

LAUNCH = Path(__file__).resolve().parents[1] / 'launch' / 'sim_demo.launch.py'


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location('sim_demo_launch', LAUNCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_camera_parameters_are_sim_camera_parameters() -> None:
    sim_camera = pytest.importorskip('flash_vstream_ros.ros.sim_camera', reason='no rclpy')
    module = load()
    args = module.launch_arguments()
    (params,) = module.camera_parameters({name: default for name, (default, _) in args.items()})
    fields = set(sim_camera.SimCameraSettings.__dataclass_fields__)
    assert set(params) <= fields
    defaults = sim_camera.SimCameraSettings()
    for name in ('width', 'height', 'seed'):
        assert int(params[name]) == getattr(defaults, name)
    assert float(params['rate_hz']) == defaults.rate_hz
    assert Path(args['params_file'][0]).name == 'default.yaml'


def test_description_builds_where_launch_ros_exists() -> None:
    launch = pytest.importorskip('launch', reason='launch is not installed (no ROS distro)')
    if not hasattr(launch, 'LaunchDescription'):
        pytest.skip('the installed "launch" is the unrelated PyPI project, not ROS launch')
    pytest.importorskip('launch_ros', reason='launch_ros is not installable from pip wheels')
    assert len(load().generate_launch_description().entities) >= 3
