"""Frame preprocessing exactly as transformers' CLIPImageProcessor: resize, center crop, normalise.

The released checkpoints were trained and evaluated on frames from ``CLIPImageProcessor``
(PIL backend): shortest side to ``size`` with the long side truncated (``int(size * long /
short)``), PIL bicubic on uint8, center crop (zero padding when the image is smaller), then
``x / 255`` and per-channel normalisation in float32. A torch resize differs by a pixel column
on common sizes (640x480 -> 299 wide instead of 298) and by its bicubic kernel, so the resize
and crop run in PIL on the CPU (a few ms per frame) and only the normalisation on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np
from PIL import Image
import torch

from flash_vstream_ros.errors import BadFrameError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
BICUBIC = int(Image.Resampling.BICUBIC)  # 3, what CLIP and SigLIP processors use


@dataclass(frozen=True)
class ImageSpec:
    """How a vision tower wants its input."""

    size: int  # shortest side after resize (0: resize both sides straight to crop)
    crop: int  # side of the square crop fed to the tower
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    resample: int = BICUBIC  # a PIL resampling filter code, as preprocessor_config.json has it

    @classmethod
    def from_folder(cls, folder: Path, default: ImageSpec) -> ImageSpec:
        """Read ``preprocessor_config.json`` when the folder has one, else ``default``."""
        path = folder / 'preprocessor_config.json'
        if not path.is_file():
            return default
        data = json.loads(path.read_text())
        size, crop = _side(data.get('size'), default.size), _side(data.get('crop_size'), 0)
        if not data.get('do_center_crop', True) or not crop:
            size, crop = 0, size  # SigLIP style: resize straight to the square
        mean = tuple(data.get('image_mean', default.mean))
        std = tuple(data.get('image_std', default.std))
        resample = data.get('resample', default.resample)
        resample = resample if resample in {int(r) for r in Image.Resampling} else BICUBIC
        return cls(size=size, crop=crop, mean=mean, std=std, resample=int(resample))


def _side(value: object, fallback: int) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in ('shortest_edge', 'height'):
            if isinstance(value.get(key), int):
                return int(value[key])
    return fallback


def check_frame(frame: np.ndarray) -> None:
    """BadFrameError unless ``frame`` is an RGB uint8 (H, W, 3) array with H, W > 0."""
    if (
        not isinstance(frame, np.ndarray)
        or frame.dtype != np.uint8
        or frame.ndim != 3
        or frame.shape[2] != 3
        or frame.shape[0] == 0
        or frame.shape[1] == 0
    ):
        shape = getattr(frame, 'shape', None)
        dtype = getattr(frame, 'dtype', type(frame).__name__)
        raise BadFrameError(f'expected an RGB uint8 (H, W, 3) frame, got shape {shape} {dtype}')


def preprocess(
    frames: Sequence[np.ndarray], spec: ImageSpec, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """RGB uint8 frames of any sizes -> normalised pixels (B, 3, crop, crop) on ``device``."""
    if not frames:
        raise BadFrameError('no frames to encode')
    crops = np.stack([resize_crop(f, spec) for f in frames])  # (B, crop, crop, 3) uint8
    pixels = torch.from_numpy(crops).to(device, non_blocking=True).permute(0, 3, 1, 2)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return ((pixels.float() / 255.0 - mean) / std).to(dtype)  # (B, 3, crop, crop)


def resize_size(height: int, width: int, spec: ImageSpec) -> tuple[int, int]:
    """(height, width) after the resize: transformers' ``get_resize_output_image_size``."""
    if spec.size <= 0:
        return spec.crop, spec.crop
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(spec.size * long / short)  # truncated, as the processor does
    return (new_long, spec.size) if height > width else (spec.size, new_long)


def resize_crop(frame: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """One RGB uint8 frame (H, W, 3) -> the uint8 center crop (crop, crop, 3) the tower sees."""
    check_frame(frame)
    height, width = resize_size(frame.shape[0], frame.shape[1], spec)
    image = Image.fromarray(np.ascontiguousarray(frame))
    if (width, height) != image.size:
        image = image.resize((width, height), resample=spec.resample)
    return center_crop(np.asarray(image), spec.crop)


def center_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The processor's center crop: top-left at (H - side) // 2; zero padding when smaller."""
    height, width = image.shape[:2]
    if height >= side and width >= side:
        top, left = (height - side) // 2, (width - side) // 2
        return image[top : top + side, left : left + side]
    out = np.zeros((max(side, height), max(side, width), 3), dtype=image.dtype)
    top, left = -(-(out.shape[0] - height) // 2), -(-(out.shape[1] - width) // 2)  # ceil
    out[top : top + height, left : left + width] = image
    return center_crop(out, side)
