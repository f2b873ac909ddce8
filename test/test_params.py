"""ROS parameters mirror the configuration tree one to one, and are validated on set."""

from __future__ import annotations

from collections.abc import Iterator
import math
from pathlib import Path
from typing import Any

import pytest

rclpy = pytest.importorskip('rclpy')

from rclpy.context import Context  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from flash_vstream_ros.config import (  # noqa: E402
    AppConfig,
    describe,
    dump_ros_params,
    flatten,
    with_overrides,
)
from flash_vstream_ros.errors import ConfigError  # noqa: E402
from flash_vstream_ros.ros import params  # noqa: E402

pytestmark = pytest.mark.ros

DOMAIN_ID = 71


@pytest.fixture(scope='module')
def context() -> Iterator[Context]:
    ctx = Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    yield ctx
    rclpy.shutdown(context=ctx)


def make_node(
    context: Context, overrides: list[Parameter] | None = None, name: str = 'params_test'
) -> tuple[Node, list[str]]:
    node = Node(name, context=context, parameter_overrides=overrides or [])
    problems = params.declare_config_parameters(node)
    return node, problems


@pytest.fixture
def node(context: Context) -> Iterator[Node]:
    n, problems = make_node(context)
    assert problems == []
    yield n
    n.destroy_node()


def test_every_config_leaf_is_a_parameter_and_vice_versa(node: Node) -> None:
    leaves = {s.name for s in describe(AppConfig)}
    declared = set(node._parameters) - {'use_sim_time', 'start_type_description_service'}
    assert leaves == declared
    assert leaves == set(flatten(AppConfig()))


def test_defaults_read_back_equal_the_config_defaults(node: Node) -> None:
    assert params.read_config(node) == AppConfig()


def test_descriptors_carry_description_type_range_and_choices(node: Node) -> None:
    by_name = {s.name: s for s in describe(AppConfig)}
    for name, spec in by_name.items():
        desc = node.describe_parameter(name)
        assert desc.description.startswith(spec.description)
        if spec.choices:
            assert all(c in desc.description for c in spec.choices)
    temporal = node.describe_parameter('memory.star.temporal_clusters')
    assert temporal.type == Parameter.Type.INTEGER.value
    assert (temporal.integer_range[0].from_value, temporal.integer_range[0].to_value) == (1, 1024)
    alpha = node.describe_parameter('memory.star.abstract_alpha')
    assert alpha.floating_point_range[0].to_value == pytest.approx(1.0)
    topics = node.describe_parameter('ros.image_topics')
    assert topics.type == Parameter.Type.STRING_ARRAY.value
    assert 'read at configure' in node.describe_parameter('model.path').additional_constraints
    assert 'live' in node.describe_parameter('ros.warn_throttle_s').additional_constraints


def test_overrides_are_read_back_and_ints_are_accepted_for_floats(context: Context) -> None:
    overrides: list[Parameter[Any]] = [
        Parameter('engine.ingest_rate_hz', value=2),
        Parameter('ros.image_topics', value=['cam_a/image', 'cam_b/image']),
        Parameter('memory.kind', value='synopsis'),
    ]
    n, problems = make_node(context, overrides, 'params_overrides')
    try:
        cfg = params.read_config(n)
        assert problems == []
        assert cfg.engine.ingest_rate_hz == 2.0
        assert cfg.ros.image_topics == ['cam_a/image', 'cam_b/image']
        assert cfg.memory.kind == 'synopsis'
        assert cfg.ros.compressed_topics == []
    finally:
        n.destroy_node()


def test_wrong_type_override_keeps_the_node_alive_and_is_reported(context: Context) -> None:
    overrides: list[Parameter[Any]] = [
        Parameter('engine.frame_queue_size', value='lots'),
        Parameter('memory.star.temporal_clusters', value=0),
    ]
    n, problems = make_node(context, overrides, 'params_bad_overrides')
    try:
        assert len(problems) == 2
        assert any('engine.frame_queue_size' in p for p in problems)
        assert any('memory.star.temporal_clusters' in p for p in problems)
        assert params.read_config(n) == AppConfig()
    finally:
        n.destroy_node()


def test_invalid_choice_in_an_override_fails_reading_the_config(context: Context) -> None:
    n, problems = make_node(context, [Parameter('memory.kind', value='lstm')], 'params_choice')
    try:
        assert problems == []
        with pytest.raises(ValueError, match="'lstm'"):
            params.read_config(n)
    finally:
        n.destroy_node()


@pytest.mark.parametrize(
    ('name', 'value', 'reason'),
    [
        ('memory.kind', 'lstm', "must be one of ['star', 'synopsis'], got 'lstm'"),
        ('memory.star.retrieved_frames', 100, 'must be <= temporal_clusters'),
        ('engine.ingest_rate_hz', 'fast', "must be float, got 'fast'"),
        ('generation.temperature', 9.0, 'out of range'),
        ('generation.temperature', 5e-324, 'use 0 for greedy'),
        ('generation.temperature', float('nan'), 'temperature'),
        ('generation.top_p', float('nan'), 'top_p'),
    ],
)
def test_invalid_values_are_refused_with_the_reason(
    node: Node, name: str, value: object, reason: str
) -> None:
    params.install_validator(node, lambda: False)
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful
    assert reason in result.reason
    assert params.read_config(node) == AppConfig()


def test_configure_time_parameters_are_refused_while_configured(node: Node) -> None:
    configured = [True]
    params.install_validator(node, lambda: configured[0])
    result = node.set_parameters([Parameter('model.path', value='/models/x')])[0]
    assert not result.successful
    assert 'clean up' in result.reason
    assert node.set_parameters([Parameter('ros.warn_throttle_s', value=1.0)])[0].successful
    configured[0] = False
    assert node.set_parameters([Parameter('model.path', value='/models/x')])[0].successful
    assert params.read_config(node).model.path == '/models/x'


def test_a_params_file_with_empty_lists_and_nested_names_loads(tmp_path: Path) -> None:
    path = tmp_path / 'p.yaml'
    path.write_text(dump_ros_params(AppConfig()))
    ctx = Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID, args=['--ros-args', '--params-file', str(path)])
    try:
        n, problems = make_node(ctx, name='params_file')
        assert problems == []
        assert params.read_config(n) == AppConfig()
        n.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_check_changes_ignores_parameters_outside_the_config() -> None:
    current = flatten(AppConfig())
    result = params.check_changes(current, [Parameter('use_sim_time', value=True)], True)
    assert result.successful


def test_accepted_changes_reach_the_hook_before_they_are_stored(node: Node) -> None:
    seen: list[tuple[str, object, object]] = []

    def hook(changes: list[Parameter[Any]]) -> None:
        for p in changes:
            seen.append((p.name, p.value, node.get_parameter(p.name).value))

    params.install_validator(node, lambda: True, hook)
    assert node.set_parameters([Parameter('ros.status_period_s', value=0.25)])[0].successful
    assert not node.set_parameters([Parameter('model.path', value='/x')])[0].successful
    assert seen == [('ros.status_period_s', 0.25, 1.0)]  # new value, old one still stored


@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf])
def test_config_refuses_non_finite_floats(value: float) -> None:
    """NaN passes every range comparison (all are False): it is refused by name, not range."""
    with pytest.raises(ConfigError, match='must be a finite number'):
        with_overrides(AppConfig(), {'generation.top_p': value})
