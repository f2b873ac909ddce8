"""The demo model's language: what its projector says the memory shows, the questions asked
about it, and the answers the adapter is trained to give (scripts/train_demo_adapter.py).

A readout is a list of objects ('red ball', ...) in the words the projector emits
(models/demo.py, which also writes it into the prompt); ``sample_question`` gives a question
about it with its right answer. Pure functions: the
training script samples readouts, the benchmark and the demo ask the same question texts of the
real model and score its answers with sim/qa.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flash_vstream_ros.sim.shapes import COLOURS, SHAPES

SEEN_Q = 'Which objects did the video show? Name each by colour and shape.'
NOW_Q = 'Which objects are in view now?'
PRESENT_Q = 'Was there a {name} in the video? Answer yes or no.'
IN_VIEW_Q = 'Is the {name} in view now? Answer yes or no.'
COLOUR_Q = 'What colour was the {shape} in the video?'


def article(name: str) -> str:
    return f'an {name}' if name[0] in 'aeiou' else f'a {name}'


def listing(objects: Sequence[str]) -> str:
    """'A red ball, a blue cross and an orange box.' ('Nothing.' for none)."""
    if not objects:
        return 'Nothing.'
    said = [article(o) for o in objects]
    text = said[0] if len(said) == 1 else ', '.join(said[:-1]) + ' and ' + said[-1]
    return text[0].upper() + text[1:] + '.'


def colour_reply(objects: Sequence[str], shape: str) -> str:
    colours = [o.split()[0] for o in objects if o.split()[1] == shape]
    if not colours:
        return f'I did not see {article(shape)}.'
    return ' and '.join(dict.fromkeys(colours)).capitalize() + '.'


def sample_readout(rng: np.random.Generator) -> list[str]:
    """A readout like the projector's: 0-8 objects of distinct colours (it names one object per
    colour), mostly of distinct shapes too (as the world makes them), sometimes not (what a
    wrong shape call looks like)."""
    k = int(rng.integers(0, 9))
    colours = rng.permutation(list(COLOURS))[:k]
    if rng.random() < 0.8:
        shapes = rng.permutation(list(SHAPES))[:k]
    else:
        shapes = rng.choice(list(SHAPES), k)
    return [f'{c} {s}' for c, s in zip(colours, shapes, strict=True)]


def sample_question(rng: np.random.Generator, objects: Sequence[str]) -> tuple[str, str]:
    """(question, right answer) of one of the demo's question types about ``objects``."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return (SEEN_Q if rng.random() < 0.5 else NOW_Q), listing(objects)
    if kind in (1, 2):
        name = _probe(rng, objects)
        yes = 'Yes.' if name in objects else 'No.'
        return (PRESENT_Q if kind == 1 else IN_VIEW_Q).format(name=name), yes
    shape = _pick(rng, [o.split()[1] for o in objects], SHAPES)
    return COLOUR_Q.format(shape=shape), colour_reply(objects, shape)


def _pick(rng: np.random.Generator, present: Sequence[str], every: Sequence[str]) -> str:
    """Half the time one that is there (when any is), else any."""
    pool = present if present and rng.random() < 0.5 else every
    return str(pool[int(rng.integers(0, len(pool)))])


def _probe(rng: np.random.Generator, objects: Sequence[str]) -> str:
    """An object to ask about: half listed, half not (often sharing a colour or a shape)."""
    if objects and rng.random() < 0.5:
        return objects[int(rng.integers(0, len(objects)))]
    while True:
        c = _pick(rng, [o.split()[0] for o in objects], tuple(COLOURS))
        s = _pick(rng, [o.split()[1] for o in objects], SHAPES)
        if f'{c} {s}' not in objects:
            return f'{c} {s}'
