"""Frame preprocessing in torch on the model's device: resize, center crop, normalise.

What a CLIP image processor does (shortest side to ``size``, bicubic; center crop to ``crop``;
scale to [0, 1]; normalise per channel), batched, without PIL in the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from flash_vstream_ros.errors import BadFrameError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ImageSpec:
    """How a vision tower wants its input."""

    size: int  # shortest side after resize (0: resize both sides straight to crop)
    crop: int  # side of the square crop fed to the tower
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

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
        return cls(size=size, crop=crop, mean=mean, std=std)


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
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    out = [_resize_crop(_to_tensor(f, device), spec) for f in frames]  # each (1, 3, c, c)
    pixels = torch.cat(out) / 255.0  # (B, 3, c, c)
    return ((pixels - mean) / std).to(dtype)


def _to_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    check_frame(frame)
    t = torch.from_numpy(np.ascontiguousarray(frame)).to(device, non_blocking=True)
    return t.permute(2, 0, 1).unsqueeze(0).float()  # (1, 3, H, W)


def _resize_crop(img: torch.Tensor, spec: ImageSpec) -> torch.Tensor:
    h, w = img.shape[-2:]
    if spec.size <= 0:
        size = (spec.crop, spec.crop)
    else:
        side = max(spec.size, spec.crop)  # never smaller than the crop
        scale = side / min(h, w)
        size = (max(side, round(h * scale)), max(side, round(w * scale)))
    if size != (h, w):
        img = functional.interpolate(
            img, size=size, mode='bicubic', align_corners=False, antialias=True
        ).clamp_(0, 255)
    top, left = (size[0] - spec.crop) // 2, (size[1] - spec.crop) // 2
    return img[..., top : top + spec.crop, left : left + spec.crop]  # (1, 3, crop, crop)
