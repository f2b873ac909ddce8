"""The machinery of the configuration tree: declared fields, validation, conversions.

Every field is declared with :func:`param`, which records a description, a range or a set of
choices. From that single declaration come the validation (``ConfigNode.__post_init__``), the
ROS parameters (``ros/params.py`` declares one parameter per leaf, dotted names such as
``memory.star.temporal_clusters``), the YAML files in ``config/`` and the README's tables.
The tree itself is in :mod:`flash_vstream_ros.config.settings`.

This module imports nothing of ours but the errors, and nothing heavy (no torch, no rclpy).
"""

from __future__ import annotations

import builtins
import dataclasses
from dataclasses import dataclass, field
import math
from pathlib import Path
import typing
from typing import Any, TypeVar

import yaml

from flash_vstream_ros.errors import ConfigError

T = TypeVar('T', bound='ConfigNode')

LEAF_TYPES = (bool, int, float, str)


def param(
    default: Any,
    description: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Declare a config field with its description and its valid range or choices."""
    meta = {'description': description, 'low': low, 'high': high, 'choices': choices}
    if isinstance(default, list):
        frozen = tuple(default)
        return field(default_factory=lambda: list(frozen), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type[T], description: str) -> Any:
    """Declare a nested config section."""
    return field(default_factory=cls, metadata={'description': description})


@dataclass(frozen=True)
class ParamSpec:
    """One leaf of the configuration tree, as ROS parameters and documentation see it."""

    name: str  # dotted, e.g. 'memory.star.temporal_clusters'
    type: builtins.type  # bool, int, float, str or list
    item_type: builtins.type | None  # element type of a list field
    default: Any
    description: str
    low: float | None
    high: float | None
    choices: tuple[str, ...] | None


class ConfigNode:
    """Mixin that validates every field of a config dataclass after construction."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _coerce(type(self).__name__, f.name, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
            _check_range(type(self).__name__, f, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise ConfigError."""


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, ConfigNode)


def _coerce(owner: str, name: str, hint: Any, value: Any) -> Any:
    where = f'{owner}.{name}'
    if _is_section(hint):
        if not isinstance(value, hint):
            raise ConfigError(f'{where} must be a {hint.__name__}, got {value!r}')
        return value
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{where} must be a list of {item.__name__}, got {value!r}')
        return [_coerce_leaf(where, item, v) for v in value]
    return _coerce_leaf(where, hint, value)


def _coerce_leaf(where: str, hint: type, value: Any) -> Any:
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f'{where} must be an int, got {value!r}')
    if not isinstance(value, hint):
        raise ConfigError(f'{where} must be {hint.__name__}, got {value!r}')
    return value


def _check_range(owner: str, f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    values = value if isinstance(value, list) else [value]
    for v in values:
        # NaN passes every comparison below (all are False), so it is refused first.
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f'{owner}.{f.name} must be a finite number, got {v!r}')
        if meta.get('low') is not None and v < meta['low']:
            raise ConfigError(f'{owner}.{f.name} must be >= {meta["low"]}, got {v!r}')
        if meta.get('high') is not None and v > meta['high']:
            raise ConfigError(f'{owner}.{f.name} must be <= {meta["high"]}, got {v!r}')
        if meta.get('choices') and v not in meta['choices']:
            choices = list(meta['choices'])
            raise ConfigError(f'{owner}.{f.name} must be one of {choices}, got {v!r}')


def to_dict(cfg: ConfigNode) -> dict[str, Any]:
    """Nested plain dict (lists copied), ready for YAML or JSON."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        out[f.name] = (
            to_dict(value)
            if isinstance(value, ConfigNode)
            else (list(value) if isinstance(value, list) else value)
        )
    return out


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = '') -> T:
    """Build ``cls`` from a nested dict; unknown keys are an error naming the valid ones."""
    if not isinstance(data, dict):
        raise ConfigError(f'{where or cls.__name__} must be a mapping, got {data!r}')
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f'unknown config key(s) {unknown} in {where or "<root>"}; valid: {sorted(names)}'
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        path = f'{where}.{key}' if where else key
        kwargs[key] = from_dict(hint, value, where=path) if _is_section(hint) else value
    return cls(**kwargs)


def flatten(cfg: ConfigNode, prefix: str = '') -> dict[str, Any]:
    """Dotted leaf names to values: {'memory.star.temporal_clusters': 25, ...}."""
    out: dict[str, Any] = {}
    for key, value in to_dict(cfg).items():
        _flatten_into(out, f'{prefix}{key}', value)
    return out


def _flatten_into(out: dict[str, Any], name: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten_into(out, f'{name}.{key}', sub)
    else:
        out[name] = value


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten` on plain dicts."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        node = nested
        *parents, leaf = name.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def with_overrides(cfg: T, flat: dict[str, Any]) -> T:
    """A new validated config with dotted-name overrides applied."""
    merged = flatten(cfg)
    unknown = sorted(set(flat) - set(merged))
    if unknown:
        raise ConfigError(f'unknown parameter(s) {unknown}')
    merged.update(flat)
    return from_dict(type(cfg), unflatten(merged))


def describe(cls: type[ConfigNode], prefix: str = '') -> list[ParamSpec]:
    """Every leaf parameter of ``cls`` with its type, default, description and range."""
    specs: list[ParamSpec] = []
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[f.name]
        name = f'{prefix}{f.name}'
        if dataclasses.is_dataclass(hint):
            specs.extend(describe(hint, f'{name}.'))  # type: ignore[arg-type]
            continue
        is_list = typing.get_origin(hint) is list
        specs.append(
            ParamSpec(
                name=name,
                type=list if is_list else hint,
                item_type=typing.get_args(hint)[0] if is_list else None,
                default=getattr(default, f.name),
                description=f.metadata['description'],
                low=f.metadata['low'],
                high=f.metadata['high'],
                choices=f.metadata['choices'],
            )
        )
    return specs


def load_yaml(path: str | Path, cls: type[T]) -> T:
    """Load a config from YAML: a plain nested mapping, or a ROS 2 params file.

    A ROS params file (``node_name: {ros__parameters: {...}}`` or ``/**: ...``) is accepted so
    that the node and the CLI read the same files in ``config/``. Parameters not in the
    configuration tree (``use_sim_time``) are ignored there.
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f'cannot read config file {path}: {exc}') from exc
    return from_dict(cls, _strip_ros_wrapper(data), where=str(path))


def _strip_ros_wrapper(data: Any) -> Any:
    if not isinstance(data, dict) or len(data) != 1:
        return data
    (inner,) = data.values()
    if isinstance(inner, dict) and 'ros__parameters' in inner:
        params = dict(inner['ros__parameters'] or {})
        params.pop('use_sim_time', None)  # a ROS parameter of every node, not ours
        return unflatten(params)  # accepts nested and dotted names alike
    return data


def dump_ros_params(cfg: ConfigNode, node_name: str = '/**') -> str:
    """The config as a ROS 2 params YAML (what ``config/default.yaml`` holds)."""
    return yaml.safe_dump(
        {node_name: {'ros__parameters': to_dict(cfg)}}, sort_keys=False, default_flow_style=False
    )
