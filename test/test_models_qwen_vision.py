"""Qwen2-VL pixel patches without torchvision equal the official processors' (and a golden).

The golden (test/data/qwen_patches_golden.npz, 18 KB) holds a small RGB image and the patch
rows of transformers' ``Qwen2VLImageProcessorPil`` (transformers 5.24) for it, so the check
holds where no official processor can run. Regenerate it with
``python test/test_models_qwen_vision.py --regen`` (needs transformers 5 with the PIL backend).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
import sys
from typing import Any

import numpy as np
import pytest

from flash_vstream_ros.models.qwen_vision import (
    QwenImageSpec,
    frames_to_patches,
    normalise,
    patchify,
    smart_resize,
)

GOLDEN = Path(__file__).parent / 'data' / 'qwen_patches_golden.npz'
SPEC = QwenImageSpec(min_pixels=28 * 28, max_pixels=4 * 224 * 224)
SIZES = [(40, 60), (90, 130), (480, 640), (300, 300)]
HAS_TORCHVISION = importlib.util.find_spec('torchvision') is not None


def image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def ours(img: np.ndarray, spec: QwenImageSpec = SPEC) -> tuple[np.ndarray, tuple[int, ...]]:
    h, w = smart_resize(img.shape[0], img.shape[1], spec.factor, spec.min_pixels, spec.max_pixels)
    return patchify(normalise(img, h, w, spec)[None], spec)


def official(cls_name: str, img: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    import transformers.models.qwen2_vl as qwen2_vl

    module = {
        'Qwen2VLImageProcessorPil': 'image_processing_pil_qwen2_vl',
        'Qwen2VLImageProcessor': 'image_processing_qwen2_vl',
    }[cls_name]
    cls: Any = getattr(importlib.import_module(f'{qwen2_vl.__name__}.{module}'), cls_name)
    proc = cls(min_pixels=SPEC.min_pixels, max_pixels=SPEC.max_pixels)
    out = proc(images=[img], return_tensors='np')
    return np.asarray(out['pixel_values']), tuple(int(v) for v in out['image_grid_thw'][0])


@pytest.mark.unit
def test_golden_patches() -> None:
    data = np.load(GOLDEN)
    rows, grid = ours(data['image'])
    assert grid == tuple(int(v) for v in data['grid'])
    np.testing.assert_allclose(rows, data['patches'], atol=1e-5)


@pytest.mark.unit
def test_smart_resize_keeps_limits() -> None:
    for h, w in [(40, 60), (480, 640), (1080, 1920), (28, 5000)]:
        rh, rw = smart_resize(h, w, 28, SPEC.min_pixels, SPEC.max_pixels)
        assert rh % 28 == 0
        assert rw % 28 == 0
        assert SPEC.min_pixels <= rh * rw <= SPEC.max_pixels


@pytest.mark.unit
def test_stream_frames_share_one_grid() -> None:
    side = QwenImageSpec().stream_side()
    assert side == 448  # v2's 4 * 224 * 224 pixels: a 16x16 grid of merged tokens
    rows, grids = frames_to_patches([image(480, 640), image(100, 50, 1)], QwenImageSpec(), side)
    assert grids.tolist() == [[1, 32, 32], [1, 32, 32]]
    assert rows.shape == (2 * 32 * 32, 3 * 2 * 14 * 14)


@pytest.mark.model
@pytest.mark.parametrize('size', SIZES)
def test_equal_to_the_official_pil_processor(size: tuple[int, int]) -> None:
    pytest.importorskip('transformers.models.qwen2_vl.image_processing_pil_qwen2_vl')
    img = image(*size)
    want, want_grid = official('Qwen2VLImageProcessorPil', img)
    got, grid = ours(img)
    assert grid == want_grid
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.model
@pytest.mark.skipif(
    not HAS_TORCHVISION,
    reason='torchvision is not installed (it would replace the CPU torch): the torchvision '
    'Qwen2VLImageProcessor cannot run here; the PIL processor and the golden cover it',
)
@pytest.mark.parametrize('size', SIZES)
def test_equal_to_the_official_torchvision_processor(size: tuple[int, int]) -> None:
    img = image(*size)
    want, want_grid = official('Qwen2VLImageProcessor', img)
    got, grid = ours(img)
    assert grid == want_grid
    # torchvision resizes with its own bicubic (antialiased on tensors): a few levels apart
    np.testing.assert_allclose(got, want, atol=0.1)
    assert np.abs(got - want).mean() < 0.02


@pytest.mark.model
@pytest.mark.parametrize('size', SIZES)
def test_equal_to_the_numpy_processor_of_transformers_4(size: tuple[int, int]) -> None:
    transformers = pytest.importorskip('transformers')
    if int(transformers.__version__.split('.')[0]) >= 5:
        pytest.skip('transformers 5 made Qwen2VLImageProcessor the torchvision one')
    img = image(*size)
    want, want_grid = official('Qwen2VLImageProcessor', img)
    got, grid = ours(img)
    assert grid == want_grid
    np.testing.assert_allclose(got, want, atol=1e-5)


def regenerate() -> None:
    img = image(40, 60, seed=7)
    patches, grid = official('Qwen2VLImageProcessorPil', img)
    np.savez_compressed(GOLDEN, image=img, patches=patches.astype(np.float32), grid=grid)
    print(f'wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes): grid {grid}')


if __name__ == '__main__' and '--regen' in sys.argv:
    regenerate()
