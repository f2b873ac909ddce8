"""The synthetic world: deterministic for a seed, ground truth that matches the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flash_vstream_ros.errors import ConfigError
from flash_vstream_ros.sim import EventLog, World, WorldConfig, frame_stamp_ns, read_events
from flash_vstream_ros.sim.shapes import COLOURS

pytestmark = pytest.mark.unit

TIMES = [i / 7.0 for i in range(0, 400, 13)]  # about 57 s of world time


def test_same_seed_gives_identical_frames_in_any_order() -> None:
    a, b = (
        World(WorldConfig(width=160, height=120, seed=3)),
        World(WorldConfig(width=160, height=120, seed=3)),
    )
    forward = [a.render(t) for t in TIMES]
    backward = [b.render(t) for t in reversed(TIMES)][::-1]
    for x, y in zip(forward, backward, strict=True):
        assert np.array_equal(x, y)
    assert [a.observe(t).sightings for t in TIMES] == [b.observe(t).sightings for t in TIMES]


def test_different_seeds_give_different_worlds() -> None:
    a, b = (
        World(WorldConfig(seed=1, width=160, height=120)),
        World(WorldConfig(seed=2, width=160, height=120)),
    )
    assert a.objects != b.objects
    assert any(not np.array_equal(a.render(t), b.render(t)) for t in TIMES)


def test_frames_have_the_configured_size_and_change_over_time() -> None:
    world = World(WorldConfig(width=320, height=200))
    image = world.render(0.0)
    assert image.shape == (200, 320, 3)
    assert image.dtype == np.uint8
    assert not np.array_equal(image, world.render(3.0))  # the camera pans


def test_every_object_has_its_own_colour_and_the_background_none() -> None:
    world = World(WorldConfig(objects=len(COLOURS), width=160, height=120))
    colours = [o.colour for o in world.objects]
    assert len(set(colours)) == len(colours)
    pano = world._pano
    assert np.array_equal(pano[..., 0], pano[..., 1])
    assert np.array_equal(pano[..., 1], pano[..., 2])


def test_sightings_match_the_pixels_exactly() -> None:
    world = World(WorldConfig(width=320, height=240, seed=5))
    colour = {o.name: np.array(o.colour, np.uint8) for o in world.objects}
    seen = 0
    for t in TIMES:
        frame = world.observe(t)
        for s in frame.sightings:
            x0, y0, x1, y1 = s.bbox
            box = frame.image[y0:y1, x0:x1]
            mask = np.all(box == colour[s.name], axis=2)
            assert int(mask.sum()) == s.pixels
            # the box is tight: the colour touches all four sides
            assert mask[0].any()
            assert mask[-1].any()
            assert mask[:, 0].any()
            assert mask[:, -1].any()
            outside = np.all(frame.image == colour[s.name], axis=2).sum() - mask.sum()
            assert outside == 0
            seen += 1
        shown = {s.name for s in frame.sightings}
        for obj in world.objects:  # an object not reported has (almost) no pixels
            if obj.name not in shown:
                count = np.all(frame.image == np.array(obj.colour, np.uint8), axis=2).sum()
                assert count < world.config.min_pixels
    assert seen > 10


def test_event_log_is_consistent_with_the_frames(tmp_path: Path) -> None:
    world = World(WorldConfig(width=160, height=120, seed=2))
    path = tmp_path / 'events.jsonl'
    fps = 10.0
    with EventLog(path, world) as log:
        for i in range(300):
            log.add(world.observe(i / fps), i, frame_stamp_ns(i, fps, 5_000_000_000))
    records = read_events(path)
    assert records[0]['event'] == 'world'
    assert len(records[0]['objects']) == 6
    frames = [r for r in records if r['event'] == 'frame']
    assert [r['frame'] for r in frames] == list(range(300))
    assert frames[10]['stamp'] == pytest.approx(6.0)
    assert frames[10]['stamp_ns'] == 6_000_000_000
    visible: dict[str, bool] = {}
    for r in records[1:]:
        name = str(r.get('object'))
        if r['event'] == 'appear':
            assert not visible.get(name, False)
            visible[name] = True
        elif r['event'] == 'disappear':
            assert visible.get(name, False)
            visible[name] = False
        elif r['event'] == 'visible':
            assert visible[name]
            image = world.render(r['t'])
            x0, y0, x1, y1 = r['bbox']
            colour = next(o.colour for o in world.objects if o.name == name)
            assert np.all(image[y0:y1, x0:x1] == colour, axis=2).sum() == r['pixels']
    assert sum(r['event'] == 'appear' for r in records) >= 3
    assert sum(r['event'] == 'disappear' for r in records) >= 2


def test_visible_period_thins_the_visible_records() -> None:
    world = World(WorldConfig(width=160, height=120, seed=2))
    every, sparse = EventLog(None, world), EventLog(None, world, visible_period_s=1.0)
    for i in range(200):
        frame = world.observe(i / 10.0)
        every.add(frame, i, i * 100_000_000)
        sparse.add(frame, i, i * 100_000_000)
    count = [sum(r['event'] == 'visible' for r in log.records) for log in (every, sparse)]
    assert count[1] < count[0] / 5
    appear = [[r for r in log.records if r['event'] != 'visible'] for log in (every, sparse)]
    assert appear[0] == appear[1]


def test_frame_stamps_are_exact_integers() -> None:
    assert frame_stamp_ns(0, 30.0, 7) == 7
    assert frame_stamp_ns(30, 30.0) == 1_000_000_000
    assert frame_stamp_ns(1, 30.0) == 33_333_333


@pytest.mark.parametrize(
    'kwargs',
    [
        {'width': 4},
        {'objects': 0},
        {'objects': 99},
        {'span': 0.5},
        {'cycle_s': (5.0, 1.0)},
        {'on_fraction': (0.5, 1.5)},
        {'pan_period_s': 0.0},
    ],
)
def test_bad_world_settings_are_refused_with_the_value(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match='WorldConfig'):
        WorldConfig(**kwargs)  # type: ignore[arg-type]
