"""Frame preprocessing equals transformers' CLIP / SigLIP image processors (PIL backend)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from flash_vstream_ros.models.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    SIGLIP_MEAN,
    SIGLIP_STD,
    ImageSpec,
    preprocess,
    resize_size,
)

pytestmark = pytest.mark.unit

CPU = torch.device('cpu')
# (height, width): camera sizes, odd sizes, portrait frames
SHAPES = [(480, 640), (720, 1280), (144, 176), (333, 481), (481, 333), (640, 480), (224, 224)]


def processor(name: str, **kwargs: Any) -> Any:
    """The PIL-backed processor (transformers 5: ``*Pil``; 4.x: the class itself)."""
    import transformers

    cls = getattr(transformers, f'{name}Pil', None) or getattr(transformers, name)
    return cls(**kwargs)


def clip_processor(side: int) -> Any:
    """CLIP-L/14 settings (openai/clip-vit-large-patch14{-336} preprocessor_config.json)."""
    return processor(
        'CLIPImageProcessor',
        do_resize=True,
        size={'shortest_edge': side},
        resample=3,
        do_center_crop=True,
        crop_size={'height': side, 'width': side},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


def frame(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth content plus noise: both the kernel and the rounding show up in the pixels."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = 127 + 100 * np.sin(xx[..., None] / 17.0 + yy[..., None] / 23.0 + np.arange(3))
    noisy = smooth + rng.normal(0, 25, (h, w, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def reference(proc: Any, image: np.ndarray) -> torch.Tensor:
    out = proc(images=[image], return_tensors='np')['pixel_values']
    return torch.from_numpy(np.asarray(out, dtype=np.float32))  # (1, 3, S, S)


@pytest.mark.parametrize('side', [224, 336])
@pytest.mark.parametrize('shape', SHAPES)
def test_equals_clip_image_processor(side: int, shape: tuple[int, int]) -> None:
    image = frame(shape)
    ours = preprocess([image], ImageSpec(size=side, crop=side), CPU, torch.float32)
    expected = reference(clip_processor(side), image)
    assert ours.shape == expected.shape == (1, 3, side, side)
    assert torch.allclose(ours, expected, rtol=0, atol=1e-6), (ours - expected).abs().max()


def test_resize_rounds_like_the_processor() -> None:
    spec = ImageSpec(size=224, crop=224)
    assert resize_size(480, 640, spec) == (224, 298)  # int(224 * 640 / 480) = 298, not 299
    assert resize_size(640, 480, spec) == (298, 224)
    assert resize_size(333, 481, spec) == (224, 323)


def test_a_batch_of_mixed_sizes_equals_the_processor_frame_by_frame() -> None:
    images = [frame(s, seed=i) for i, s in enumerate(SHAPES)]
    ours = preprocess(images, ImageSpec(size=336, crop=336), CPU, torch.float32)
    proc = clip_processor(336)
    expected = torch.cat([reference(proc, im) for im in images])
    assert torch.allclose(ours, expected, rtol=0, atol=1e-6)


def test_smaller_than_the_crop_is_zero_padded_like_the_processor() -> None:
    image = frame((100, 150))
    spec = ImageSpec(size=64, crop=96)  # resized to 64 x 96, then padded to 96 x 96
    proc = clip_processor(96)
    proc.size = {'shortest_edge': 64}
    expected = reference(proc, image)
    assert torch.allclose(preprocess([image], spec, CPU, torch.float32), expected, atol=1e-6)


@pytest.mark.parametrize('shape', [(480, 640), (481, 333)])
def test_equals_siglip_image_processor(shape: tuple[int, int]) -> None:
    image = frame(shape)
    proc = processor(
        'SiglipImageProcessor',
        size={'height': 384, 'width': 384},
        resample=3,
        image_mean=list(SIGLIP_MEAN),
        image_std=list(SIGLIP_STD),
    )
    spec = ImageSpec(size=0, crop=384, mean=SIGLIP_MEAN, std=SIGLIP_STD)
    ours = preprocess([image], spec, CPU, torch.float32)
    assert torch.allclose(ours, reference(proc, image), rtol=0, atol=1e-6)
