"""Shapes and colours of the synthetic world: outlines as polygons, saturated RGB colours.

Pure numpy. A shape is drawn as one filled polygon (a ball as a 32-gon), so the image and the
label map of a frame come from the same vertices and agree pixel for pixel.
"""

from __future__ import annotations

import numpy as np

# Saturated colours that the grey background never takes (RGB).
COLOURS: dict[str, tuple[int, int, int]] = {
    'red': (220, 30, 30),
    'blue': (30, 60, 220),
    'green': (30, 180, 50),
    'yellow': (240, 220, 20),
    'magenta': (210, 40, 200),
    'cyan': (20, 200, 210),
    'orange': (250, 140, 10),
    'purple': (120, 40, 170),
}

SHAPES: tuple[str, ...] = (
    'box',
    'ball',
    'triangle',
    'star',
    'diamond',
    'hexagon',
    'cross',
    'arrow',
)


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    angles = phase + np.arange(n) * (2.0 * np.pi / n)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (n, 2)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular(2 * points, -np.pi / 2)  # (2p, 2)
    radius = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return outer * radius[:, None]


def _cross(arm: float = 0.35) -> np.ndarray:
    a = arm
    return np.array(
        [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ],
        dtype=np.float64,
    )


def _arrow() -> np.ndarray:
    return np.array(
        [(-1, -0.35), (0.2, -0.35), (0.2, -0.8), (1, 0), (0.2, 0.8), (0.2, 0.35), (-1, 0.35)],
        dtype=np.float64,
    )


_OUTLINES: dict[str, np.ndarray] = {
    'box': np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64) * 0.85,
    'ball': _regular(32),
    'triangle': _regular(3, -np.pi / 2),
    'star': _star(),
    'diamond': np.array([(0, -1), (0.7, 0), (0, 1), (-0.7, 0)], dtype=np.float64),
    'hexagon': _regular(6),
    'cross': _cross() * 0.9,
    'arrow': _arrow(),
}


def outline(shape: str) -> np.ndarray:
    """Unit outline of ``shape`` centred on the origin: (N, 2) x, y in [-1, 1]."""
    try:
        return _OUTLINES[shape]
    except KeyError:
        raise ValueError(f'unknown shape {shape!r}; known: {list(_OUTLINES)}') from None


def place(shape: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Outline rotated by ``angle`` (rad), scaled by ``radius`` and moved to (cx, cy)."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return outline(shape) @ rot.T * radius + np.array([cx, cy])  # (N, 2)
