"""Questions about a synthetic run with ground truth from the world, and their scoring.

A run: frames of ``World(seed)`` at ``times`` are fed to an engine (as the camera would); then
questions are asked through ``Engine.ask`` and each answer is scored against what the frames
showed. Pure scoring here; feeding the engine and asking in flash_vstream_ros/cli/demo_eval.py;
the question texts are the demo model's (sim/demo_talk.py).

Question types, each scored per object:
* ``seen``: "Which objects did the video show?" over the whole memory: is the object's name
  ('red ball') in the answer, against whether any fed frame showed it.
* ``present``: "Was there a <name> in the video? Answer yes or no." for each object of the world
  and for ``ABSENT`` names the world does not hold (a colour of one object with the shape of
  another): does the answer start with yes.
* ``now``: "Is the <name> in view now?" over the last ``now_s`` seconds of memory
  (``Question.last_s``), for the same names: truth is the frames of that window.
* ``colour``: "What colour was the <shape>?" for each seen object: right when the answer names
  its colour first among all colour words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import re

import numpy as np

from flash_vstream_ros.sim.demo_talk import COLOUR_Q, IN_VIEW_Q, PRESENT_Q, SEEN_Q
from flash_vstream_ros.sim.shapes import COLOURS
from flash_vstream_ros.sim.world import World, WorldConfig

ABSENT = 3  # names asked about that the world does not hold


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

    kind: str  # 'seen' | 'present' | 'now' | 'colour'
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


def named(text: str, name: str) -> bool:
    """Does the text name the object ('red ball'), colour and shape together?"""
    return bool(re.search(rf'\b{name}\b', text.lower()))


def said_yes(text: str) -> bool:
    return text.strip().lower().startswith('yes')


def absent_names(names: Sequence[str], count: int = ABSENT) -> list[str]:
    """``count`` names the world does not hold: object k's colour with object k+1's shape."""
    out: list[str] = []
    for k in range(len(names)):
        name = f'{names[k].split()[0]} {names[(k + 1) % len(names)].split()[1]}'
        if name not in names and len(out) < count:
            out.append(name)
    return out


def score_seen(kind: str, text: str, truth: set[str], sight: Sightings) -> list[Score]:
    return [Score(kind, n, n in truth, named(text, n), sight.left_ago(n)) for n in sight.names]


def colour_right(text: str, name: str) -> bool:
    """Is the first colour word of the text the object's colour ('red' of 'red ball')?"""
    said = colours_named(text)
    return bool(said) and said[0] == name.split()[0]


def score_colour(name: str, text: str, sight: Sightings) -> Score:
    return Score('colour', name, True, colour_right(text, name), sight.left_ago(name))


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
    the window of the whole-run questions (None: the whole memory; truth stays the whole run)."""
    answers: dict[str, str] = {}
    out: list[Score] = []
    text = answers[SEEN_Q] = ask(SEEN_Q, seen_last_s)
    out += score_seen('seen', text, sight.seen(), sight)
    seen, now = sight.seen(), sight.seen(since=sight.end - now_s + 1e-9)
    for name in [*sight.names, *absent_names(sight.names)]:
        q = PRESENT_Q.format(name=name)
        answers[q] = ask(q, seen_last_s)
        out.append(
            Score('present', name, name in seen, said_yes(answers[q]), sight.left_ago(name))
        )
        q = IN_VIEW_Q.format(name=name)
        answers[f'{q} (last {now_s:g} s)'] = reply = ask(q, now_s)
        out.append(Score('now', name, name in now, said_yes(reply), sight.left_ago(name)))
    if colour_questions:
        for name in sorted(seen):
            q = COLOUR_Q.format(shape=name.split()[1])
            answers[q] = ask(q, seen_last_s)
            out.append(score_colour(name, answers[q], sight))
    return out, answers


def accuracy(scores: Sequence[Score]) -> float:
    return sum(s.right for s in scores) / len(scores) if scores else float('nan')


def run_world(
    seed: int, seconds: float, step: float, config: WorldConfig | None = None
) -> tuple[World, np.ndarray]:
    """The world of ``seed`` (``config``'s other fields) and the times of its fed frames."""
    base = config or WorldConfig()
    world = World(WorldConfig(**{**base.__dict__, 'seed': seed}))
    return world, np.arange(0.0, seconds, step)


def balanced_accuracy(scores: Sequence[Score]) -> float:
    """Mean of the hit rate on true items and the rejection rate on false ones (a constant
    answer, 'all' or 'none', scores 0.5); one class only: plain accuracy."""
    pos = [s for s in scores if s.truth]
    neg = [s for s in scores if not s.truth]
    if not pos or not neg:
        return accuracy(scores)
    return 0.5 * (accuracy(pos) + accuracy(neg))
