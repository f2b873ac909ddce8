"""A montage of the key frames the memory holds, for ``~/memory_frames`` (rqt, Foxglove).

Tiles of equal size in a near-square grid, in stamp order, each thumbnail letterboxed into its
tile with its camera and stamp written underneath. No ROS import: the node wraps the array in a
sensor_msgs/Image.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import cv2
import numpy as np

TILE = 96  # tile side in pixels (the engine's thumbnails are at most 96 pixels long)
LABEL = 14  # label strip under each tile, pixels
MAX_TILES = 64


def montage(frames: Sequence[tuple[str, float, np.ndarray]], tile: int = TILE) -> np.ndarray:
    """RGB uint8 (H, W, 3) grid of (camera, stamp, RGB thumbnail); one blank tile when empty."""
    frames = list(frames)[-MAX_TILES:]
    count = max(1, len(frames))
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    cell_h = tile + LABEL
    out = np.zeros((rows * cell_h, cols * tile, 3), np.uint8)  # (H, W, 3)
    for index, (camera, stamp, image) in enumerate(frames):
        r, c = divmod(index, cols)
        cell = out[r * cell_h : (r + 1) * cell_h, c * tile : (c + 1) * tile]
        cell[:tile] = letterbox(image, tile)
        _label(cell, f'{camera} {stamp / 1e9:.1f}', tile)  # stamp: ns
    return out


def letterbox(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` scaled to fit a ``side`` x ``side`` square, centred on black."""
    h, w = image.shape[:2]
    scale = side / max(h, w, 1)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(np.ascontiguousarray(image), (nw, nh), interpolation=cv2.INTER_AREA)
    square = np.zeros((side, side, 3), np.uint8)
    top, left = (side - nh) // 2, (side - nw) // 2
    square[top : top + nh, left : left + nw] = resized.reshape(nh, nw, -1)[:, :, :3]
    return square


def _label(cell: np.ndarray, text: str, tile: int) -> None:
    cv2.putText(
        cell,
        text[:18],
        (2, tile + LABEL - 4),
        cv2.FONT_HERSHEY_PLAIN,
        0.7,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
