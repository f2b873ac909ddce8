"""Every behaviour key of a v1 config.json is read; values we do not implement are refused."""

from __future__ import annotations

import json
from pathlib import Path
import re
from typing import Any

import pytest
import torch

from flash_vstream_ros.errors import CheckpointError
from flash_vstream_ros.models.flash_vstream import load_flash_vstream
from flash_vstream_ros.models.tiny import tiny_v1_config, write_tiny_v1
from flash_vstream_ros.models.v1_format import V1Spec

pytestmark = pytest.mark.model

CPU = torch.device('cpu')
ABSENT = object()


@pytest.mark.parametrize(
    ('key', 'value', 'supported'),
    [
        ('compress_type', 'max', "'mean'"),
        ('compress_type', None, "'mean'"),
        ('compress_type', ABSENT, "'mean'"),
        ('video_sample_type', 'kmeans', "'weighted_kmeans'"),
        ('video_sample_type', 'drop', "'weighted_kmeans'"),
        ('video_sample_type', ABSENT, "'weighted_kmeans'"),
        ('mm_vision_select_feature', 'cls_patch', "'patch'"),
        ('mm_vision_select_layer', 'penultimate', 'integer'),
        ('mm_projector_type', 'identity', "'linear' or 'mlpNx_gelu'"),
        ('mm_projector_type', 'qformer', "'linear' or 'mlpNx_gelu'"),
        ('mm_use_im_start_end', True, 'false'),
        ('mm_use_4_vision_tokens', True, 'false'),
        ('compress_size', 'eight', 'a number'),
        ('compress_Turing_update_ratio', True, 'a number'),
        ('compress_Turing_hidden_dim', 32.5, 'an integer'),
    ],
)
def test_unsupported_values_are_refused(key: str, value: Any, supported: str) -> None:
    raw = tiny_v1_config(400)
    if value is ABSENT:
        raw.pop(key)
    else:
        raw[key] = value
    shown = 'absent' if value is ABSENT else repr(value)
    pattern = rf'config\.json {key}={re.escape(shown)} is not supported; supported: .*'
    with pytest.raises(CheckpointError, match=pattern + re.escape(supported)):
        V1Spec.parse(raw, 'ckpt')


@pytest.mark.parametrize(
    ('key', 'value'),
    [
        ('compress_type', 'mean'),
        ('compress_type', 'mean_pool'),  # the research code pools for any value with 'mean'
        ('mm_projector_type', 'linear'),
        ('mm_projector_type', 'mlp3x_gelu'),
        ('mm_vision_select_layer', -1),
        ('mm_use_im_patch_token', True),  # a training-time token only
        ('image_aspect_ratio', 'square'),  # still images only
    ],
)
def test_supported_values_parse(key: str, value: Any) -> None:
    raw = tiny_v1_config(400)
    raw[key] = value
    assert V1Spec.parse(raw, 'ckpt').raw[key] == value


@pytest.fixture(scope='module')
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp('v1cfg') / 'ckpt'
    write_tiny_v1(folder)
    return folder


def edit_config(folder: Path, **changes: Any) -> None:
    config = json.loads((folder / 'config.json').read_text())
    config.update(changes)
    (folder / 'config.json').write_text(json.dumps(config))


@pytest.mark.parametrize('layer', [3, -4, 10])
def test_select_layer_outside_the_tower_is_refused(pristine: Path, layer: int) -> None:
    edit_config(pristine, mm_vision_select_layer=layer)  # the tiny tower: 2 layers, 3 states
    try:
        with pytest.raises(CheckpointError, match=rf'mm_vision_select_layer={layer} .*-3 \.\. 2'):
            load_flash_vstream(pristine, CPU, torch.float32)
    finally:
        edit_config(pristine, mm_vision_select_layer=-2)


def test_the_loader_refuses_before_building(pristine: Path) -> None:
    edit_config(pristine, video_sample_type='kmeans')
    try:
        with pytest.raises(CheckpointError, match=r"video_sample_type='kmeans'"):
            load_flash_vstream(pristine, CPU, torch.float32)
    finally:
        edit_config(pristine, video_sample_type='weighted_kmeans')
    assert load_flash_vstream(pristine, CPU, torch.float32).spec.select_layer == -2
