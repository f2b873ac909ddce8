"""Questions about a synthetic run with ground truth from the world, and their scoring.

A run: frames of ``World(seed)`` at ``times`` are fed to an engine (as the camera would); then
questions are asked through ``Engine.ask`` and each answer is scored against what the frames
showed. Pure scoring here; feeding the engine and asking in flash_vstream_ros/cli/demo_eval.py.

Question types (what the demo model can be asked; see models/demo.py for why these):
* ``seen``: "Which objects did the video show?" over the whole memory. Scored per object of the
  world: did the answer name its colour, and had the object been visible in any fed frame.
* ``now``: the same question over the last ``now_s`` seconds of memory (``Question.last_s``):
  truth is the objects visible in that window.
* ``colour``: "What colour was the <shape>?" for each seen object: right when the answer names
  its colour first among all colour words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import re

import numpy as np

from flash_vstream_ros.sim.shapes import COLOURS
from flash_vstream_ros.sim.world import World, WorldConfig

SEEN_Q = 'Which objects did the video show? Name each by colour and shape.'
COLOUR_Q = 'What colour was the {shape} in the video?'


@dataclass(frozen=True)
class Sightings:
    """When each object of a run was visible: name -> sorted times (s) of frames showing it."""

    names: tuple[str, ...]
    visible: dict[str, tuple[float, ...]]
    end: float  # time of the last fed frame

    def seen(self, since: float | None = None) -> set[str]:
        lo = -np.inf if since is None else since
        return {n for n, ts in self.visible.items() if any(t >= lo for t in ts)}

    def left_ago(self, name: str) -> float | None:
        """Seconds from the object's last sighting to the end of the run (None: never seen)."""
        ts = self.visible.get(name, ())
        return self.end - ts[-1] if ts else None


@dataclass(frozen=True)
class Score:
    """One scored item: a question type, an object, what was true and what the answer said."""

    kind: str  # 'seen' | 'now' | 'colour'
    obj: str
    truth: bool  # seen / in the window (colour: always True)
    said: bool  # named (colour: the right colour named first)
    left_ago: float | None  # seconds since the object was last visible (None: never)

    @property
    def right(self) -> bool:
        return self.truth == self.said


def sightings(world: World, times: Sequence[float]) -> Sightings:
    visible: dict[str, list[float]] = {o.name: [] for o in world.objects}
    for t in times:
        for s in world.observe(float(t)).sightings:
            visible[s.name].append(float(t))
    return Sightings(tuple(visible), {k: tuple(v) for k, v in visible.items()}, float(times[-1]))


def colours_named(text: str) -> list[str]:
    """Colour words of the world in the order the text names them."""
    words = re.findall(r'[a-z]+', text.lower())
    return [w for w in words if w in COLOURS]


def score_seen(kind: str, text: str, truth: set[str], sight: Sightings) -> list[Score]:
    named = set(colours_named(text))
    return [
        Score(kind, n, n in truth, n.split()[0] in named, sight.left_ago(n)) for n in sight.names
    ]


def score_colour(name: str, text: str, sight: Sightings) -> Score:
    named = colours_named(text)
    return Score(
        'colour', name, True, bool(named) and named[0] == name.split()[0], sight.left_ago(name)
    )


# ask(question, last_s or None) -> answer text
Asker = Callable[[str, 'float | None'], str]


def score_run(
    ask: Asker,
    sight: Sightings,
    now_s: float = 3.0,
    colour_questions: bool = True,
    seen_last_s: float | None = None,
) -> tuple[list[Score], dict[str, str]]:
    """Ask the questions of one run; (scores, question -> answer text). ``seen_last_s``:
    the 'seen' question's window (None: the whole memory; truth stays the whole run)."""
    answers: dict[str, str] = {}
    out: list[Score] = []
    text = answers[SEEN_Q] = ask(SEEN_Q, seen_last_s)
    out += score_seen('seen', text, sight.seen(), sight)
    now_text = answers[f'{SEEN_Q} (last {now_s:g} s)'] = ask(SEEN_Q, now_s)
    out += score_seen('now', now_text, sight.seen(since=sight.end - now_s + 1e-9), sight)
    if colour_questions:
        for name in sorted(sight.seen()):
            q = COLOUR_Q.format(shape=name.split()[1])
            answers[q] = ask(q, None)
            out.append(score_colour(name, answers[q], sight))
    return out, answers


def accuracy(scores: Sequence[Score]) -> float:
    return sum(s.right for s in scores) / len(scores) if scores else float('nan')


def run_world(seed: int, seconds: float, step: float) -> tuple[World, np.ndarray]:
    world = World(WorldConfig(seed=seed))
    return world, np.arange(0.0, seconds, step)


def balanced_accuracy(scores: Sequence[Score]) -> float:
    """Mean of the hit rate on true items and the rejection rate on false ones (a constant
    answer, 'all' or 'none', scores 0.5); one class only: plain accuracy."""
    pos = [s for s in scores if s.truth]
    neg = [s for s in scores if not s.truth]
    if not pos or not neg:
        return accuracy(scores)
    return 0.5 * (accuracy(pos) + accuracy(neg))
