"""The Gazebo demo files: world SDF, bridge config and launch data (Gazebo is not run here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
import xml.etree.ElementTree as ET

import pytest
import yaml

from flash_vstream_ros.config import AppConfig

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
WORLD = REPO / 'gazebo' / 'flash_vstream_room.sdf'
BRIDGE = REPO / 'gazebo' / 'bridge.yaml'
LAUNCH = REPO / 'launch' / 'gazebo.launch.py'


def load_launch() -> ModuleType:
    spec = importlib.util.spec_from_file_location('gazebo_launch', LAUNCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def camera_sensor() -> ET.Element:
    sensors = ET.parse(WORLD).getroot().findall('.//sensor[@type="camera"]')
    assert len(sensors) == 1
    return sensors[0]


def test_world_is_sdf_with_one_world_and_plugins() -> None:
    root = ET.parse(WORLD).getroot()
    assert root.tag == 'sdf'
    assert float(root.attrib['version']) >= 1.6
    (world,) = root.findall('world')
    plugins = {p.attrib['name'] for p in world.iter('plugin')}
    assert {
        'gz::sim::systems::Sensors',
        'gz::sim::systems::Physics',
        'gz::sim::systems::SceneBroadcaster',
        'gz::sim::systems::JointController',
    } <= plugins


def test_world_has_a_panning_camera() -> None:
    sensor = camera_sensor()
    assert sensor.findtext('topic') == 'camera/image_raw'
    assert float(sensor.findtext('update_rate') or 0) > 0
    image = sensor.find('camera/image')
    assert image is not None
    assert (image.findtext('width'), image.findtext('height')) == ('640', '480')
    root = ET.parse(WORLD).getroot()
    controller = next(
        p for p in root.iter('plugin') if p.attrib['name'].endswith('JointController')
    )
    pan = controller.findtext('joint_name')
    joint = root.find(f'.//joint[@name="{pan}"]')
    assert joint is not None
    assert joint.attrib['type'] == 'revolute'
    assert float(controller.findtext('initial_velocity') or 0) != 0.0


def test_world_has_distinctly_coloured_objects() -> None:
    root = ET.parse(WORLD).getroot()
    colours = {}
    for model in root.iter('model'):
        name = model.attrib['name']
        if name.startswith(('wall', 'ground', 'camera')):
            continue
        diffuse = model.findtext('.//visual/material/diffuse')
        assert diffuse is not None, name
        colours[name] = tuple(float(v) for v in diffuse.split())
    assert len(colours) >= 4
    assert len(set(colours.values())) == len(colours)
    assert {'red_box', 'blue_ball', 'green_cylinder', 'yellow_cone'} <= set(colours)


def test_bridge_maps_the_camera_to_the_node_topic_and_clock() -> None:
    entries = yaml.safe_load(BRIDGE.read_text())
    by_type = {e['ros_type_name']: e for e in entries}
    image = by_type['sensor_msgs/msg/Image']
    assert image['gz_type_name'] == 'gz.msgs.Image'
    assert image['direction'] == 'GZ_TO_ROS'
    assert image['gz_topic_name'] == '/' + (camera_sensor().findtext('topic') or '')
    assert image['ros_topic_name'] == AppConfig().ros.image_topics[0]
    clock = by_type['rosgraph_msgs/msg/Clock']
    assert (clock['ros_topic_name'], clock['gz_topic_name'], clock['direction']) == (
        '/clock',
        '/clock',
        'GZ_TO_ROS',
    )


def test_sim_camera_default_topic_is_the_node_default() -> None:
    sim_camera = pytest.importorskip(
        'flash_vstream_ros.ros.sim_camera', reason='rclpy is not installed'
    )
    assert sim_camera.SimCameraSettings().topic == AppConfig().ros.image_topics[0]


def test_launch_data_without_launch_packages() -> None:
    module = load_launch()
    args = module.launch_arguments()
    assert set(args) >= {'world', 'bridge_config', 'params_file', 'gui', 'question', 'ask'}
    assert Path(args['world'][0]).name == WORLD.name
    assert Path(args['bridge_config'][0]).name == BRIDGE.name
    assert module.gz_command('w.sdf', True) == ['gz', 'sim', '-r', 'w.sdf']
    assert '-s' in module.gz_command('w.sdf', False)
    assert module.bridge_parameters('b.yaml') == [{'config_file': 'b.yaml', 'use_sim_time': True}]
    assert module.node_parameters('p.yaml')[1] == {'use_sim_time': True}


def test_launch_description_builds_where_launch_ros_exists() -> None:
    launch = pytest.importorskip('launch', reason='launch is not installed (no ROS distro)')
    if not hasattr(launch, 'LaunchDescription'):
        pytest.skip('the installed "launch" is the unrelated PyPI project, not ROS launch')
    pytest.importorskip('launch_ros', reason='launch_ros is not installable from pip wheels')
    description = load_launch().generate_launch_description()
    assert len(description.entities) >= 5
