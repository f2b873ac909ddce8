"""Demo without Gazebo: the synthetic camera, the flash_vstream node and a question.

    ros2 launch flash_vstream_ros sim_demo.launch.py [width:=640 height:=480 rate_hz:=30.0]
        [seed:=0] [event_log:=/tmp/sim_events.jsonl] [question:='...'] [ask_delay_s:=20.0]

The camera publishes on ``image_raw`` (the node's default subscription) with sensor-data QoS;
the event log records what was visible when, to compare with the node's answers. Thin on
purpose: the data below imports no launch package (test/test_sim_launch.py checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PACKAGE = 'flash_vstream_ros'

ARGUMENTS: dict[str, tuple[str, str]] = {
    'params_file': ('', 'Node parameters (default: share/flash_vstream_ros/config/default.yaml)'),
    'width': ('640', 'Camera image width'),
    'height': ('480', 'Camera image height'),
    'rate_hz': ('30.0', 'Camera frame rate'),
    'seed': ('0', 'World seed (same seed, same frames and events)'),
    'event_log': ('/tmp/flash_vstream_sim_events.jsonl', 'Ground-truth event log (JSON lines)'),
    'question': ('Which coloured objects have you seen?', 'Question to ask'),
    'ask': ('true', 'Ask the question after ask_delay_s seconds'),
    'ask_delay_s': ('20.0', 'Seconds before the question'),
}


def default_params_file() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory

        return str(Path(get_package_share_directory(PACKAGE)) / 'config' / 'default.yaml')
    except (ImportError, LookupError, ValueError, OSError):
        return str(Path(__file__).resolve().parents[1] / 'config' / 'default.yaml')


def launch_arguments() -> dict[str, tuple[str, str]]:
    args = dict(ARGUMENTS)
    args['params_file'] = (default_params_file(), ARGUMENTS['params_file'][1])
    return args


def camera_parameters(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The sim camera's parameters from the launch configurations (typed by the camera)."""
    return [{name: cfg[name] for name in ('width', 'height', 'rate_hz', 'seed', 'event_log')}]


def generate_launch_description() -> Any:
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, TimerAction
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    args = launch_arguments()
    cfg: dict[str, Any] = {name: LaunchConfiguration(name) for name in args}
    typed = dict(cfg)
    for name, kind in (('width', int), ('height', int), ('seed', int), ('rate_hz', float)):
        typed[name] = ParameterValue(cfg[name], value_type=kind)
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in args.items()),
        Node(package=PACKAGE, executable='flash_vstream_sim_camera', name='sim_camera',
             output='screen', parameters=camera_parameters(typed)),
        Node(package=PACKAGE, executable='flash_vstream_node', name='flash_vstream',
             output='screen', parameters=[cfg['params_file']]),
        TimerAction(period=cfg['ask_delay_s'], actions=[
            Node(package=PACKAGE, executable='flash_vstream_ask', output='screen',
                 arguments=[cfg['question']], condition=IfCondition(cfg['ask'])),
        ]),
    ])  # fmt: skip
