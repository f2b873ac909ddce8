"""Gazebo demo: a room with coloured objects, a panning camera, the node and a question.

    ros2 launch flash_vstream_ros gazebo.launch.py [gui:=false] [question:='...']

Starts ``gz sim`` with ``gazebo/flash_vstream_room.sdf``, ``ros_gz_bridge`` with
``gazebo/bridge.yaml`` (camera image -> ``image_raw``, ``/clock``), the flash_vstream node on
sim time, and after ``ask_delay_s`` seconds the question client with ``question``. Needs a ROS
desktop with Gazebo (``ros-<distro>-ros-gz``); the plain data below imports no launch package
so that test/test_sim_gazebo.py checks it where launch_ros is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PACKAGE = 'flash_vstream_ros'
WORLD_FILE = 'flash_vstream_room.sdf'
BRIDGE_FILE = 'bridge.yaml'

# name -> (default, description); launch_arguments() fills in the installed file paths
ARGUMENTS: dict[str, tuple[str, str]] = {
    'world': ('', 'SDF world (default: share/flash_vstream_ros/gazebo/flash_vstream_room.sdf)'),
    'bridge_config': ('', 'ros_gz_bridge YAML (default: share/.../gazebo/bridge.yaml)'),
    'params_file': ('', 'Node parameters (default: share/flash_vstream_ros/config/default.yaml)'),
    'gui': ('true', 'Show the Gazebo window (false: server only, headless rendering)'),
    'question': ('Which coloured objects have you seen, and where?', 'Question to ask'),
    'ask': ('true', 'Ask the question after ask_delay_s seconds'),
    'ask_delay_s': ('30.0', 'Seconds of simulation before the question'),
}


def share_dir() -> Path:
    """The installed share/flash_vstream_ros, or the source tree when run from a checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, ValueError, OSError):
        return Path(__file__).resolve().parents[1]


def launch_arguments() -> dict[str, tuple[str, str]]:
    """ARGUMENTS with the installed world, bridge and parameters files filled in."""
    share = share_dir()
    args = dict(ARGUMENTS)
    for name, path in (
        ('world', share / 'gazebo' / WORLD_FILE),
        ('bridge_config', share / 'gazebo' / BRIDGE_FILE),
        ('params_file', share / 'config' / 'default.yaml'),
    ):
        args[name] = (str(path), ARGUMENTS[name][1])
    return args


def gz_command(world: Any, gui: bool) -> list[Any]:
    """``gz sim``: run at once (-r); -s (server only) without the GUI."""
    return ['gz', 'sim', '-r', *([] if gui else ['-s', '--headless-rendering']), world]


def bridge_parameters(config_file: Any) -> list[dict[str, Any]]:
    return [{'config_file': config_file, 'use_sim_time': True}]


def node_parameters(params_file: Any) -> list[Any]:
    return [params_file, {'use_sim_time': True}]


def ask_arguments(question: Any) -> list[Any]:
    return [question, '--timeout', '300']


def generate_launch_description() -> Any:
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, TimerAction
    from launch.conditions import IfCondition, UnlessCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    args = launch_arguments()
    cfg = {name: LaunchConfiguration(name) for name in args}
    gui = IfCondition(cfg['gui'])
    headless = UnlessCondition(cfg['gui'])
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in args.items()
            ),
            ExecuteProcess(cmd=gz_command(cfg['world'], True), output='screen', condition=gui),
            ExecuteProcess(
                cmd=gz_command(cfg['world'], False), output='screen', condition=headless
            ),
            Node(
                package='ros_gz_bridge',
                executable='parameter_bridge',
                output='screen',
                parameters=bridge_parameters(cfg['bridge_config']),
            ),
            Node(
                package=PACKAGE,
                executable='flash_vstream_node',
                name='flash_vstream',
                output='screen',
                parameters=node_parameters(cfg['params_file']),
            ),
            TimerAction(
                period=cfg['ask_delay_s'],
                actions=[
                    Node(
                        package=PACKAGE,
                        executable='flash_vstream_ask',
                        output='screen',
                        arguments=ask_arguments(cfg['question']),
                        condition=IfCondition(cfg['ask']),
                        parameters=[{'use_sim_time': True}],
                    ),
                ],
            ),
        ]
    )
