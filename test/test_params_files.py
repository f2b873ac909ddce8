"""The per-family parameter files in config/ load into the config tree and into the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from flash_vstream_ros.config import AppConfig, describe, flatten, load_yaml

CONFIG = Path(__file__).resolve().parents[1] / 'config'
FAMILIES = ('tiny', 'flash_vstream', 'llava', 'qwen2_vl', 'demo')


@pytest.mark.unit
@pytest.mark.parametrize('family', FAMILIES)
def test_family_file_loads_and_names_its_family(family: str) -> None:
    cfg: AppConfig = load_yaml(CONFIG / f'{family}.yaml')
    assert cfg.model.family == family
    changed = {k for k, v in flatten(cfg).items() if flatten(AppConfig())[k] != v}
    assert changed <= {'model.family', 'model.path', 'model.offline', 'memory.kind'}


@pytest.mark.unit
def test_every_model_family_has_a_file() -> None:
    choices = next(s.choices for s in describe(AppConfig) if s.name == 'model.family')
    assert choices is not None
    assert set(choices) == set(FAMILIES)


@pytest.mark.ros
@pytest.mark.parametrize('family', FAMILIES)
def test_node_parameters_from_default_and_family_files(family: str) -> None:
    rclpy = pytest.importorskip('rclpy')
    from rclpy.context import Context
    from rclpy.node import Node

    from flash_vstream_ros.ros import params

    ctx = Context()
    args = [
        '--ros-args',
        '--params-file',
        str(CONFIG / 'default.yaml'),
        '--params-file',
        str(CONFIG / f'{family}.yaml'),
    ]
    rclpy.init(context=ctx, domain_id=71, args=args)
    try:
        node = Node(f'family_{family}', context=ctx)
        assert params.declare_config_parameters(node) == []
        assert params.read_config(node) == load_yaml(CONFIG / f'{family}.yaml')
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


@pytest.mark.unit
def test_paper_memory_file_is_the_papers_memory() -> None:
    """config/paper_memory.yaml: no timeline, seeds as they come, no recent frames; the rest is
    this package's defaults, which follow the research code."""
    cfg: AppConfig = load_yaml(CONFIG / 'paper_memory.yaml')
    assert cfg.memory.timeline.segments == 0
    assert cfg.memory.star.abstract_seed_cosine == 1.0
    assert cfg.memory.star.recent_frames == 0
    assert cfg.memory.star.token_count == 681
    changed = {k for k, v in flatten(cfg).items() if flatten(AppConfig())[k] != v}
    assert changed <= {'memory.timeline.segments', 'memory.star.abstract_seed_cosine'}
