"""Launch the flash_vstream node with a parameters file, a namespace and a camera topic remap.

    ros2 launch flash_vstream_ros flash_vstream.launch.py \
        params_file:=/path/to/params.yaml namespace:=robot1 image_topic:=/camera/image_raw

Kept thin on purpose: the plain data (arguments, defaults, remaps) lives in module-level
functions that import no launch package, so test/test_packaging_launch.py checks it where
``launch_ros`` is not installable; launch and launch_ros are imported only inside
:func:`generate_launch_description`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PACKAGE = 'flash_vstream_ros'
EXECUTABLE = 'flash_vstream_node'
NODE_NAME = 'flash_vstream'

# name -> (default, description); launch_arguments() fills in the params_file default
ARGUMENTS: dict[str, tuple[str, str]] = {
    'params_file': ('', 'Parameters YAML (default: share/flash_vstream_ros/config/default.yaml)'),
    'namespace': ('', 'Namespace of the node (its topics, services and action move with it)'),
    'image_topic': ('image_raw', "Camera topic remapped onto the node's image_raw subscription"),
    'use_sim_time': ('false', 'Use /clock (simulation or bag replay)'),
    'log_level': ('info', 'Logging level of the node'),
}


def default_params_file() -> str:
    """The installed config/default.yaml, or the source tree's when run from a checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return str(Path(get_package_share_directory(PACKAGE)) / 'config' / 'default.yaml')
    except (ImportError, LookupError, OSError):  # not installed, or AMENT_PREFIX_PATH unset
        return str(Path(__file__).resolve().parents[1] / 'config' / 'default.yaml')


def launch_arguments() -> dict[str, tuple[str, str]]:
    """ARGUMENTS with the installed default parameters file filled in."""
    args = dict(ARGUMENTS)
    args['params_file'] = (default_params_file(), ARGUMENTS['params_file'][1])
    return args


def remappings(image_topic: Any) -> list[tuple[str, Any]]:
    """Remap the node's default camera topic (relative ``image_raw``) onto ``image_topic``."""
    return [('image_raw', image_topic)]


def node_parameters(params_file: Any, use_sim_time: Any) -> list[Any]:
    """The node's parameter sources: the YAML file, then use_sim_time."""
    return [params_file, {'use_sim_time': use_sim_time}]


def generate_launch_description() -> Any:
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    args = launch_arguments()
    config = {name: LaunchConfiguration(name) for name in args}
    sim_time = ParameterValue(config['use_sim_time'], value_type=bool)
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, (default, description) in args.items()
            ),
            Node(
                package=PACKAGE,
                executable=EXECUTABLE,
                name=NODE_NAME,
                namespace=config['namespace'],
                output='screen',
                emulate_tty=True,
                parameters=node_parameters(config['params_file'], sim_time),
                remappings=remappings(config['image_topic']),
                arguments=['--ros-args', '--log-level', config['log_level']],
            ),
        ]
    )
