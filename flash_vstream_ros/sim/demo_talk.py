"""The demo model's language: what its projector says the memory shows, the questions asked
about it, and the answers the adapter is trained to give (scripts/train_demo_adapter.py).

A readout is a list of objects ('red ball', ...) in the words the projector emits
(models/demo.py); ``reply`` gives the right answer to a question about it. Pure functions: the
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
SHAPE_Q = 'What shape was the {colour} object?'
NUMBERS = ('No', 'One', 'Two', 'Three', 'Four', 'Five', 'Six', 'Seven', 'Eight', 'Nine')


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


def shape_reply(objects: Sequence[str], colour: str) -> str:
    shapes = [o.split()[1] for o in objects if o.split()[0] == colour]
    if not shapes:
        return f'I did not see {article(colour)} object.'
    return (' and '.join(article(s) for s in dict.fromkeys(shapes)) + '.').capitalize()


def sample_readout(rng: np.random.Generator) -> list[str]:
    """A readout like the projector's: 0-8 objects, mostly of distinct colours and shapes (as
    the world makes them), sometimes not (what a noisy token looks like)."""
    k = int(rng.integers(0, 9))
    colours, shapes = list(COLOURS), list(SHAPES)
    if rng.random() < 0.8:
        pairs = zip(rng.permutation(colours)[:k], rng.permutation(shapes)[:k], strict=True)
    else:
        pairs = zip(rng.choice(colours, k), rng.choice(shapes, k), strict=True)
    return list(dict.fromkeys(f'{c} {s}' for c, s in pairs))


def sample_question(rng: np.random.Generator, objects: Sequence[str]) -> tuple[str, str]:
    """(question, right answer) of one of the demo's question types about ``objects``."""
    kind = int(rng.integers(0, 6))
    if kind == 0:
        return (SEEN_Q if rng.random() < 0.5 else NOW_Q), listing(objects)
    if kind in (1, 2):
        name = _probe(rng, objects)
        yes = 'Yes.' if name in objects else 'No.'
        return (PRESENT_Q if kind == 1 else IN_VIEW_Q).format(name=name), yes
    if kind == 3:
        shape = _pick(rng, [o.split()[1] for o in objects], SHAPES)
        return COLOUR_Q.format(shape=shape), colour_reply(objects, shape)
    if kind == 4:
        colour = _pick(rng, [o.split()[0] for o in objects], tuple(COLOURS))
        return SHAPE_Q.format(colour=colour), shape_reply(objects, colour)
    return 'How many objects did the video show?', f'{NUMBERS[len(objects)]}.'


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


def readout_text(objects: Sequence[str]) -> str:
    """What the LM reads after 'The video showed:': 'red ball, blue cross' or 'nothing'."""
    return ', '.join(objects) or 'nothing'
