"""A small deterministic 2.5-D world seen by a panning camera (pure numpy + OpenCV, no ROS).

The world is a wide grey room (``span`` view widths wide, one view height high) holding a few
objects of distinct shapes and colours ('red box', 'blue ball', ...). Each object comes and goes
on its own cycle, drifts along a Lissajous path and spins; the camera pans back and forth.
Everything is a pure function of (seed, t): the same seed renders identical frames in any order.

Units: one world unit is the view height; x grows to the right, y downwards.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import cv2
import numpy as np

from flash_vstream_ros.errors import ConfigError
from flash_vstream_ros.sim.shapes import COLOURS, SHAPES, place

SUBPIXEL_BITS = 4  # cv2.fillPoly shift: vertices with 1/16 pixel precision


@dataclass(frozen=True)
class WorldConfig:
    """What the world looks like and how it moves."""

    width: int = 640  # image width (pixels)
    height: int = 480  # image height (pixels)
    seed: int = 0
    objects: int = 6  # at most len(COLOURS): every object has its own colour
    span: float = 2.5  # world width in view widths (the camera pans over it)
    pan_period_s: float = 24.0  # one full pan, there and back
    cycle_s: tuple[float, float] = (8.0, 20.0)  # range of an object's appear/disappear cycle
    on_fraction: tuple[float, float] = (0.4, 0.8)  # range of the part of a cycle it is there
    min_pixels: int = 30  # fewer visible pixels than this count as not visible

    def __post_init__(self) -> None:
        if not (8 <= self.width <= 8192 and 8 <= self.height <= 8192):
            raise ConfigError(
                f'WorldConfig size must be 8..8192 pixels, got {self.width}x{self.height}'
            )
        if not 1 <= self.objects <= len(COLOURS):
            raise ConfigError(f'WorldConfig.objects must be 1..{len(COLOURS)}, got {self.objects}')
        if self.span < 1.0:
            raise ConfigError(f'WorldConfig.span must be >= 1 view width, got {self.span}')
        if self.pan_period_s <= 0.0:
            raise ConfigError(f'WorldConfig.pan_period_s must be > 0, got {self.pan_period_s}')
        lo, hi = self.cycle_s
        if not 0.0 < lo <= hi:
            raise ConfigError(f'WorldConfig.cycle_s must be 0 < low <= high, got {self.cycle_s}')
        lo, hi = self.on_fraction
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(
                f'WorldConfig.on_fraction must be 0 < low <= high <= 1, got {self.on_fraction}'
            )
        if self.min_pixels < 1:
            raise ConfigError(f'WorldConfig.min_pixels must be >= 1, got {self.min_pixels}')

    @property
    def aspect(self) -> float:
        return self.width / self.height


@dataclass(frozen=True)
class WorldObject:
    """One object and its schedule: there while ((t + phase) mod cycle) < on * cycle."""

    name: str  # 'red box'
    shape: str
    colour: tuple[int, int, int]  # RGB
    radius: float  # world units
    cycle: float
    phase: float
    on: float
    centre: tuple[float, float]
    amplitude: tuple[float, float]
    omega: tuple[float, float]  # rad/s of the x and y oscillations
    theta: tuple[float, float]  # their phases
    spin: float  # rad/s

    def present(self, t: float) -> bool:
        return ((t + self.phase) % self.cycle) < self.on * self.cycle

    def position(self, t: float) -> tuple[float, float]:
        x = self.centre[0] + self.amplitude[0] * math.sin(self.omega[0] * t + self.theta[0])
        y = self.centre[1] + self.amplitude[1] * math.sin(self.omega[1] * t + self.theta[1])
        return x, y


@dataclass(frozen=True)
class Sighting:
    """An object as one frame shows it: tight pixel box [x0, x1) x [y0, y1) and pixel count."""

    name: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)
    pixels: int


@dataclass(frozen=True)
class Frame:
    """A rendered frame with its ground truth."""

    t: float
    image: np.ndarray  # (H, W, 3) uint8 RGB
    sightings: tuple[Sighting, ...]


class World:
    """The renderer: ``render(t)`` for images, ``observe(t)`` for images with ground truth."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        rng = np.random.default_rng(self.config.seed)
        self.world_width = self.config.span * self.config.aspect  # world units
        self.objects = _make_objects(self.config, self.world_width, rng)
        self._pano = _make_panorama(self.config, self.world_width, rng)  # (H, Wp, 3)

    def camera_x(self, t: float) -> int:
        """Left edge of the view in panorama pixels at time t."""
        travel = self._pano.shape[1] - self.config.width
        return round(travel * 0.5 * (1.0 - math.cos(2.0 * math.pi * t / self.config.pan_period_s)))

    def render(self, t: float) -> np.ndarray:
        """RGB uint8 image (H, W, 3) of the world at time t (seconds)."""
        return self._draw(t, labels=None)

    def observe(self, t: float) -> Frame:
        """The image at time t and which objects it shows, where, with how many pixels."""
        labels = np.zeros((self.config.height, self.config.width), np.uint8)  # (H, W)
        image = self._draw(t, labels)
        return Frame(t=t, image=image, sightings=self._sightings(t, labels))

    def labelled(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, label map (H, W) uint8): 0 background, i + 1 object i."""
        labels = np.zeros((self.config.height, self.config.width), np.uint8)  # (H, W)
        return self._draw(t, labels), labels

    def _polygons(self, t: float) -> list[tuple[int, np.ndarray]]:
        scale = float(self.config.height)
        offset = self.camera_x(t)
        out: list[tuple[int, np.ndarray]] = []
        for index, obj in enumerate(self.objects):
            if not obj.present(t):
                continue
            x, y = obj.position(t)
            pts = place(
                obj.shape, x * scale - offset, y * scale, obj.radius * scale, obj.spin * t
            )  # (N, 2) pixels in the view
            if pts[:, 0].max() < 0 or pts[:, 0].min() >= self.config.width:
                continue
            out.append((index, np.round(pts * (1 << SUBPIXEL_BITS)).astype(np.int32)))
        return out

    def _draw(self, t: float, labels: np.ndarray | None) -> np.ndarray:
        offset = self.camera_x(t)
        image = self._pano[:, offset : offset + self.config.width].copy()  # (H, W, 3)
        for index, pts in self._polygons(t):
            colour = self.objects[index].colour
            cv2.fillPoly(image, [pts], colour, cv2.LINE_8, SUBPIXEL_BITS)
            if labels is not None:
                cv2.fillPoly(labels, [pts], index + 1, cv2.LINE_8, SUBPIXEL_BITS)
        return image

    def _sightings(self, t: float, labels: np.ndarray) -> tuple[Sighting, ...]:
        found: list[Sighting] = []
        h, w = labels.shape
        for index, pts in self._polygons(t):
            px = pts >> SUBPIXEL_BITS
            x0, y0 = max(int(px[:, 0].min()) - 1, 0), max(int(px[:, 1].min()) - 1, 0)
            x1, y1 = min(int(px[:, 0].max()) + 2, w), min(int(px[:, 1].max()) + 2, h)
            if x0 >= x1 or y0 >= y1:
                continue
            mask = labels[y0:y1, x0:x1] == index + 1  # (h', w')
            pixels = int(mask.sum())
            if pixels < self.config.min_pixels:
                continue
            cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
            bbox = (
                x0 + int(cols[0]),
                y0 + int(rows[0]),
                x0 + int(cols[-1]) + 1,
                y0 + int(rows[-1]) + 1,
            )
            found.append(Sighting(self.objects[index].name, bbox, pixels))
        return tuple(found)


def _make_objects(
    cfg: WorldConfig, world_width: float, rng: np.random.Generator
) -> tuple[WorldObject, ...]:
    colours = rng.permutation(list(COLOURS))[: cfg.objects]
    shapes = rng.permutation(list(SHAPES))[: cfg.objects]
    objects = []
    for colour, shape in zip(colours, shapes, strict=True):
        radius = float(rng.uniform(0.07, 0.13))
        amp = (float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.02, 0.15)))
        cx = float(rng.uniform(radius + amp[0], world_width - radius - amp[0]))
        cy = float(rng.uniform(radius + amp[1] + 0.05, 1.0 - radius - amp[1] - 0.05))
        cycle = float(rng.uniform(*cfg.cycle_s))
        objects.append(
            WorldObject(
                name=f'{colour} {shape}',
                shape=str(shape),
                colour=COLOURS[str(colour)],
                radius=radius,
                cycle=cycle,
                phase=float(rng.uniform(0.0, cycle)),
                on=float(rng.uniform(*cfg.on_fraction)),
                centre=(cx, cy),
                amplitude=amp,
                omega=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.3, 1.0))),
                theta=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
                spin=float(rng.uniform(-1.0, 1.0)),
            )
        )
    return tuple(objects)


def _make_panorama(cfg: WorldConfig, world_width: float, rng: np.random.Generator) -> np.ndarray:
    """The static room in greys only (r == g == b), so no object colour ever occurs in it."""
    h = cfg.height
    w = math.ceil(world_width * h)
    rows = np.linspace(0.0, 1.0, h)[:, None]  # (H, 1)
    horizon = 0.62
    wall = 150.0 + 40.0 * rows / horizon
    floor = 110.0 - 50.0 * (rows - horizon) / (1.0 - horizon)
    grey = np.where(rows < horizon, wall, floor).repeat(w, axis=1)  # (H, Wp)
    for _ in range(max(3, int(world_width * 3))):  # pillars and posters on the wall
        x0 = int(rng.uniform(0, w))
        width = int(rng.uniform(0.03, 0.12) * h)
        top = int(rng.uniform(0.05, 0.3) * h)
        grey[top : int(horizon * h), x0 : x0 + width] = float(rng.uniform(70, 230))
    for x in np.arange(0.0, w, 0.25 * h):  # floor tiles
        grey[int(horizon * h) :, int(x) : int(x) + max(1, h // 240)] = 45.0
    pano = np.clip(grey, 0, 255).astype(np.uint8)
    return np.repeat(pano[:, :, None], 3, axis=2)  # (H, Wp, 3)


def frame_stamp_ns(index: int, fps: float, start_ns: int = 0) -> int:
    """Stamp (ns) of frame ``index`` of a stream at ``fps`` starting at ``start_ns``.

    The one formula the synthetic camera (stamp=world), the bag writer and the tests share, so
    that the same seed and frame count give the same stamps everywhere.
    """
    return start_ns + round(index * 1e9 / fps)
