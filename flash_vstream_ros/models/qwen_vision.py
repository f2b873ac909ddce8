"""Qwen2-VL / Qwen2.5-VL pixel preprocessing without torchvision: resize, normalise, patchify.

transformers' Qwen2-VL image and video processors need torchvision (a trap here: installing it
replaces torch), so this module does what their PIL backend does, in numpy: ``smart_resize``
(both sides multiples of ``patch * merge``, area within [min_pixels, max_pixels]), PIL bicubic
on uint8, ``x / 255``, per-channel normalisation, the frame repeated over the temporal patch
(a still image, as the processors do for images), then the patch layout the vision tower
reads: rows ordered (t, h/2, w/2, 2, 2), each row (C, temporal, patch, patch) flattened.
test/test_models_qwen_vision.py checks the result against the official processors.

A stream needs one grid for every frame (the memory's maps have a fixed size), so frames are
resized to a fixed square ``side`` (448 px: v2's ``max_pixels = 4 * 224 * 224``, which gives
the paper's 256 tokens per full-resolution frame and 64 per half-resolution one), not to the
aspect-preserving size the processor would pick for each frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from flash_vstream_ros.errors import BadFrameError, CheckpointError
from flash_vstream_ros.models.preprocess import BICUBIC, CLIP_MEAN, CLIP_STD, check_frame

V2_SIDE = 448  # Flash-VStream-Qwen's frames: max_pixels 4 * 224 * 224


@dataclass(frozen=True)
class QwenImageSpec:
    """What the Qwen2-VL vision tower wants (``preprocessor_config.json``)."""

    patch: int = 14
    temporal: int = 2
    merge: int = 2
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    resample: int = BICUBIC

    @property
    def factor(self) -> int:
        """Both sides of a resized frame are multiples of this (one merged token)."""
        return self.patch * self.merge

    def stream_side(self, wanted: int = V2_SIDE) -> int:
        """The fixed square side of streamed frames: ``wanted`` within the pixel limits."""
        f = self.factor
        side = max(f, (min(wanted, math.isqrt(self.max_pixels)) // f) * f)
        while side * side < self.min_pixels:
            side += f
        return side

    @classmethod
    def from_folder(cls, folder: Path) -> QwenImageSpec:
        """Read ``preprocessor_config.json`` (transformers 4 keys and 5 keys), else defaults."""
        path = folder / 'preprocessor_config.json'
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f'{path}: not readable JSON: {exc}') from exc
        size = data.get('size') if isinstance(data.get('size'), dict) else {}
        base = cls()
        return cls(
            patch=int(data.get('patch_size', base.patch)),
            temporal=int(data.get('temporal_patch_size', base.temporal)),
            merge=int(data.get('merge_size', base.merge)),
            mean=tuple(data.get('image_mean', base.mean)),
            std=tuple(data.get('image_std', base.std)),
            min_pixels=int(data.get('min_pixels', size.get('shortest_edge', base.min_pixels))),
            max_pixels=int(data.get('max_pixels', size.get('longest_edge', base.max_pixels))),
            resample=int(data.get('resample', base.resample)),
        )


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """The processors' target size: sides multiples of ``factor``, area within the limits."""
    if max(height, width) / min(height, width) > 200:
        raise BadFrameError(f'aspect ratio of {height}x{width} is over 200')
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def normalise(frame: np.ndarray, height: int, width: int, spec: QwenImageSpec) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (3, height, width): PIL resize, /255, mean/std."""
    check_frame(frame)
    image = Image.fromarray(np.ascontiguousarray(frame))
    if image.size != (width, height):
        image = image.resize((width, height), resample=spec.resample)
    x = np.asarray(image, dtype=np.float32) / np.float32(255.0)  # (h, w, 3)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return ((x - mean) / std).transpose(2, 0, 1)  # (3, h, w)


def patchify(frames: np.ndarray, spec: QwenImageSpec) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Normalised frames (T, C, H, W) -> patch rows (t*h*w, C*temporal*p*p) and (t, h, w).

    One frame (T = 1) is repeated over the temporal patch, as the processors do for images.
    """
    if frames.shape[0] == 1:
        frames = np.tile(frames, (spec.temporal, 1, 1, 1))
    t_all, c, height, width = frames.shape
    p, m, tp = spec.patch, spec.merge, spec.temporal
    if t_all % tp or height % (p * m) or width % (p * m):
        raise BadFrameError(f'frames {frames.shape} do not split into {tp}x{p * m}x{p * m}')
    gt, gh, gw = t_all // tp, height // p, width // p
    x = frames.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (gt, gh/m, gw/m, m, m, C, tp, p, p)
    return x.reshape(gt * gh * gw, c * tp * p * p), (gt, gh, gw)


def frames_to_patches(
    frames: Sequence[np.ndarray], spec: QwenImageSpec, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Still frames resized to side x side -> (pixel rows (B*g*g, C*tp*p*p), grid_thw (B, 3))."""
    if not frames:
        raise BadFrameError('no frames to encode')
    rows, grids = [], []
    for frame in frames:
        x, grid = patchify(normalise(frame, side, side, spec)[None], spec)
        rows.append(x)
        grids.append(grid)
    return np.concatenate(rows), np.asarray(grids, dtype=np.int64)
