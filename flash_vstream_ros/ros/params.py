"""ROS parameters declared from the configuration tree and read back into it.

One parameter per leaf of :func:`flash_vstream_ros.config.describe` (dotted names such as
``memory.star.temporal_clusters``), each with a descriptor that carries the field's description,
its type, its integer or floating-point range and its choices. Nothing here is written by hand
twice: add a field to ``config.py`` and it becomes a parameter.

Rules:

* Floating-point parameters accept integers too (``ingest_rate_hz: 2`` in a YAML file), so they
  are declared with dynamic typing; the configuration's validation then checks the value.
* Most parameters are read when the node is configured. While the node is configured (inactive
  or active) a change to one of them is refused with a reason that says to clean up first; the
  few in :data:`LIVE_PARAMETERS` take effect at once.
* A parameter override of the wrong type (from a params file or ``-p``) does not stop the node:
  the default is declared instead and the problem is reported when the node configures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
import sys
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterUninitializedException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from flash_vstream_ros.config import AppConfig, ParamSpec, describe, with_overrides
from flash_vstream_ros.errors import ConfigError

# Parameters that take effect while the node runs; every other one is read at configure time.
# Every generation.* parameter: the node hands a change to Engine.set_generation, and each
# question reads the generation settings when it starts. The ros.* periods remake the status
# timers; the throttle is read at every warning.
LIVE_PARAMETERS = frozenset(
    {s.name for s in describe(AppConfig) if s.name.startswith('generation.')}
    | {'ros.status_period_s', 'ros.frames_period_s', 'ros.warn_throttle_s'}
)

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_SCALAR_TYPES: dict[type, Parameter.Type] = {
    bool: Parameter.Type.BOOL,
    int: Parameter.Type.INTEGER,
    float: Parameter.Type.DOUBLE,
    str: Parameter.Type.STRING,
}
_ARRAY_TYPES: dict[type, Parameter.Type] = {
    bool: Parameter.Type.BOOL_ARRAY,
    int: Parameter.Type.INTEGER_ARRAY,
    float: Parameter.Type.DOUBLE_ARRAY,
    str: Parameter.Type.STRING_ARRAY,
}


def parameter_specs() -> list[ParamSpec]:
    """The configuration leaves that become ROS parameters, in declaration order."""
    return describe(AppConfig)


def parameter_type(spec: ParamSpec) -> Parameter.Type:
    """The ROS parameter type of one configuration leaf."""
    if spec.type is list:
        assert spec.item_type is not None
        return _ARRAY_TYPES[spec.item_type]
    return _SCALAR_TYPES[spec.type]


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    """A descriptor with the field's description, type, range and choices."""
    ptype = parameter_type(spec)
    text = spec.description
    if spec.choices:
        text += f' (one of: {", ".join(spec.choices)})'
    when = 'live' if spec.name in LIVE_PARAMETERS else 'read at configure'
    desc = ParameterDescriptor(
        name=spec.name,
        type=ptype.value,
        description=text,
        additional_constraints=_constraints(spec, when),
    )
    if ptype == Parameter.Type.INTEGER and (spec.low is not None or spec.high is not None):
        desc.integer_range = [
            IntegerRange(
                from_value=_INT64_MIN if spec.low is None else int(spec.low),
                to_value=_INT64_MAX if spec.high is None else int(spec.high),
                step=0,
            )
        ]
    if ptype == Parameter.Type.DOUBLE:
        desc.dynamic_typing = True  # accept 2 as well as 2.0; validation checks the type
        if spec.low is not None or spec.high is not None:
            desc.floating_point_range = [
                FloatingPointRange(
                    from_value=-sys.float_info.max if spec.low is None else float(spec.low),
                    to_value=sys.float_info.max if spec.high is None else float(spec.high),
                    step=0.0,
                )
            ]
    return desc


def _constraints(spec: ParamSpec, when: str) -> str:
    parts = [when]
    if spec.low is not None:
        parts.append(f'>= {spec.low}')
    if spec.high is not None:
        parts.append(f'<= {spec.high}')
    if spec.choices:
        parts.append(f'one of {list(spec.choices)}')
    return '; '.join(parts)


def declare_config_parameters(node: Node) -> list[str]:
    """Declare one parameter per configuration leaf; return the overrides that were refused.

    A refused override (wrong type or out of range) is replaced by the default so that the node
    still comes up; the returned messages are reported when the node configures.
    """
    problems: list[str] = []
    for spec in parameter_specs():
        problem = _declare_one(node, spec)
        if problem:
            problems.append(problem)
    return problems


def _declare_one(node: Node, spec: ParamSpec) -> str:
    ptype = parameter_type(spec)
    # Lists are declared by type (an empty default would be taken for a byte array); scalars by
    # their default (a double with dynamic typing must not be given a type).
    initial = ptype if spec.type is list else spec.default
    try:
        node.declare_parameter(spec.name, initial, descriptor_for(spec))
        problem = ''
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        node.declare_parameter(spec.name, initial, descriptor_for(spec), ignore_override=True)
        problem = f'parameter {spec.name}: override refused ({exc}); using the default'
    try:
        node.get_parameter(spec.name)
    except ParameterUninitializedException:
        # Declared by type only (no override, or an empty YAML list): give it the default.
        node.set_parameters([Parameter(spec.name, ptype, _ros_value(spec.default))])
    return problem


def _ros_value(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def parameter_values(node: Node, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Current values of the configuration parameters, as plain Python values."""
    wanted = [s.name for s in parameter_specs()] if names is None else list(names)
    return {p.name: _plain(p.value) for p in node.get_parameters(wanted)}


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == 'array':
        return list(value)
    return value


def config_from_values(values: dict[str, Any]) -> AppConfig:
    """A validated AppConfig from dotted parameter values (raises ConfigError)."""
    return with_overrides(AppConfig(), values)


def read_config(node: Node) -> AppConfig:
    """The node's parameters as a validated AppConfig (raises ConfigError)."""
    return config_from_values(parameter_values(node))


def check_changes(
    current: dict[str, Any], changes: Sequence[Parameter], configured: bool
) -> SetParametersResult:
    """Decide whether a batch of parameter changes may be applied.

    ``current`` holds the present values of every configuration parameter. Changes to other
    parameters (``use_sim_time``) are left to rclpy.
    """
    merged = dict(current)
    for change in changes:
        if change.name not in current:
            continue
        if configured and change.name not in LIVE_PARAMETERS:
            return SetParametersResult(
                successful=False,
                reason=(
                    f'parameter {change.name} is read at configure time: deactivate and clean up '
                    f'the node, set it, then configure again'
                ),
            )
        if change.type_ == Parameter.Type.NOT_SET:
            return SetParametersResult(
                successful=False, reason=f'parameter {change.name} cannot be unset'
            )
        merged[change.name] = _plain(change.value)
    try:
        config_from_values(merged)
    except ConfigError as exc:
        return SetParametersResult(successful=False, reason=str(exc))
    return SetParametersResult(successful=True)


def install_validator(
    node: Node,
    is_configured: Callable[[], bool],
    on_accepted: Callable[[list[Parameter]], None] | None = None,
) -> None:
    """Refuse invalid changes (and configure-time changes while configured) on ``node``.

    ``on_accepted`` sees every accepted batch before rclpy stores it (Humble's rclpy has no
    post-set callbacks), so live parameters can take effect with their new values. When it
    raises ConfigError the change is refused with that reason: a parameter must never read
    one value while the node runs on another.
    """

    def on_set(changes: list[Parameter]) -> SetParametersResult:
        result = check_changes(parameter_values(node), changes, is_configured())
        if not result.successful or on_accepted is None:
            return result
        try:
            on_accepted(changes)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return result

    node.add_on_set_parameters_callback(on_set)
