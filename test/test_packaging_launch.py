"""launch/flash_vstream.launch.py: its data here, the launch description where launch_ros exists.

launch_ros is not installable from PyPI (and PyPI's ``launch`` is an unrelated project), so the
launch file keeps its data in plain functions that are tested everywhere; building the real
LaunchDescription is tested only where ``launch.LaunchDescription`` and ``launch_ros`` import.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from flash_vstream_ros.config import AppConfig, load_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO_ROOT / 'launch' / 'flash_vstream.launch.py'


def load_launch_file() -> ModuleType:
    spec = importlib.util.spec_from_file_location('flash_vstream_launch', LAUNCH_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def have_launch_ros() -> bool:
    try:
        import launch
        import launch_ros  # noqa: F401
    except ImportError:
        return False
    return hasattr(launch, 'LaunchDescription')


@pytest.mark.unit
def test_arguments_cover_params_namespace_and_image_topic() -> None:
    args = load_launch_file().launch_arguments()
    assert set(args) == {'params_file', 'namespace', 'image_topic', 'use_sim_time', 'log_level'}
    assert args['namespace'][0] == ''
    assert args['image_topic'][0] == 'image_raw'
    assert all(description for _, description in args.values())


@pytest.mark.unit
def test_default_params_file_holds_the_default_config() -> None:
    params_file = Path(load_launch_file().launch_arguments()['params_file'][0])
    assert params_file.name == 'default.yaml'
    assert load_yaml(params_file) == AppConfig()


@pytest.mark.unit
def test_image_topic_remap_targets_the_node_default_subscription() -> None:
    module = load_launch_file()
    assert AppConfig().ros.image_topics == ['image_raw']
    assert module.remappings('/camera/color/image_raw') == [
        ('image_raw', '/camera/color/image_raw')
    ]
    assert module.node_parameters('/p.yaml', True) == ['/p.yaml', {'use_sim_time': True}]


@pytest.mark.unit
def test_launch_file_names_the_installed_executable() -> None:
    module = load_launch_file()
    cmake = (REPO_ROOT / 'CMakeLists.txt').read_text()
    assert module.PACKAGE == 'flash_vstream_ros'
    assert f'"{module.EXECUTABLE}=' in cmake
    assert module.NODE_NAME == 'flash_vstream'


@pytest.mark.launch
@pytest.mark.skipif(not have_launch_ros(), reason='launch / launch_ros not installed')
def test_generate_launch_description_with_launch_ros() -> None:  # pragma: no cover - ROS distro
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    description = load_launch_file().generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = [e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert declared == ['params_file', 'namespace', 'image_topic', 'use_sim_time', 'log_level']
    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert len(nodes) == 1
