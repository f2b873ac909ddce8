"""Generated questions for the Ask service and the AskStream action, each with its verdict.

``expect``: 'bad' (must come back success=false with a reason), 'ok' (must be answered) or
'any' (either, with a reason when refused). Text is checked as it travels: ROS strings end at
the first NUL character, so 'ab\\x00cd' arrives as 'ab'.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np

from flash_vstream_ros.ros.stamps import to_time

MAX_CHARS = 2000  # generation.max_question_chars default
U32_MAX = 2**32 - 1
OTHER_SCRIPTS = (
    '这个房间里有什么？',
    'ماذا ترى في الغرفة؟',
    'Что ты видишь?',
    'この部屋に何がありますか',
    '🤖 what colour is the box? 🎨📦',
    'क्या दिख रहा है?',
    'מה אתה רואה?',
    'e\u0301te\u0301 ? Ω≈ç√∫',
)
BAD_TEXT = (
    '',
    ' ',
    '\t\n\r ',
    '\u3000\u2003',  # ideographic and em spaces only
    'a' * (MAX_CHARS + 1),
    'why ' * 250_000,  # 1 MB
    'what\x01is this',
    '\x07\x08bell',
    'colour \x1b[31mred\x1b[0m?',
    'del\x7f',
    'private \ue000 use',
    'nonchar \ufffe here',
    'ok\x00',  # arrives as 'ok': valid (checked as it travels)
)


@dataclass(frozen=True)
class QCase:
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    expect: str = 'bad'


def on_wire(text: str) -> str:
    return text.split('\x00', 1)[0]


def text_verdict(text: str) -> str:
    """What the node must do with ``text`` as it arrives (the rules of questions.check_text)."""
    import unicodedata

    stripped = on_wire(text).strip()
    if not stripped or len(stripped) > MAX_CHARS:
        return 'bad'
    for ch in stripped:
        if ch not in '\t\n\r' and unicodedata.category(ch) in ('Cc', 'Cs', 'Co', 'Cn'):
            return 'bad'
    return 'ok'


def fixed_cases(newest: float, camera: str) -> list[QCase]:
    """Every listed malformation once, and the valid edge cases."""
    q = 'What is in front of the robot?'
    cases = [QCase(f'text/{_label(t)}', {'question': t}, text_verdict(t)) for t in BAD_TEXT]
    cases += [QCase('text/other-script', {'question': t}, 'ok') for t in OTHER_SCRIPTS]
    cases += [
        QCase('text/max-length', {'question': 'b' * MAX_CHARS}, 'ok'),
        QCase('text/tabs-newlines', {'question': 'what\tis\nthere?\r\n'}, 'ok'),
        QCase('window/reversed', {'question': q, 'start': newest, 'end': newest - 100.0}),
        QCase('window/future', {'question': q, 'start': newest + 1e6}),
        QCase('window/far-future', {'question': q, 'start': 2.0e9, 'end': 2.1e9}),
        QCase('window/past', {'question': q, 'end': 0.5}),
        QCase('window/last-negative', {'question': q, 'last_s': -1.0}),
        QCase('window/last-nan', {'question': q, 'last_s': math.nan}),
        QCase('window/last-inf', {'question': q, 'last_s': math.inf}),
        QCase('window/last-huge', {'question': q, 'last_s': 1e12}, 'ok'),
        QCase('window/last-tiny', {'question': q, 'last_s': 1e-9}, 'any'),
        QCase('window/all', {'question': q, 'start': 0.5, 'end': newest + 10.0}, 'ok'),
        QCase('cameras/unknown', {'question': q, 'cameras': ['no_such_camera']}),
        QCase('cameras/empty-name', {'question': q, 'cameras': ['']}),
        QCase('cameras/one-unknown', {'question': q, 'cameras': [camera, 'nope']}),
        QCase('cameras/known-twice', {'question': q, 'cameras': [camera, camera]}, 'ok'),
        QCase('limits/max-tokens-huge', {'question': q, 'max_new_tokens': U32_MAX}, 'ok'),
        QCase('limits/temperature-nan', {'question': q, 'temperature': math.nan}),
        QCase('limits/temperature-inf', {'question': q, 'temperature': math.inf}),
        QCase('limits/temperature-high', {'question': q, 'temperature': 6.0}),
        QCase('limits/temperature-negative', {'question': q, 'temperature': -3.0}, 'ok'),
        QCase('limits/temperature-sampling', {'question': q, 'temperature': 0.7}, 'ok'),
    ]
    return cases


def _label(text: str) -> str:
    if not text.strip():
        return 'blank'
    if len(text) > MAX_CHARS:
        return f'{len(text)}-chars'
    return 'control-chars' if text_verdict(text) == 'bad' else 'nul-cut'


def random_cases(rng: np.random.Generator, n: int, newest: float, camera: str) -> Iterator[QCase]:
    """``n`` questions with every field random; the verdict is 'any' (must just respond)."""
    for _ in range(n):
        length = int(rng.choice([0, 1, 5, 40, 300, MAX_CHARS, MAX_CHARS + 5]))
        if rng.random() < 0.5:
            codes = rng.integers(1, 0xD7FF, length)
        else:
            codes = rng.integers(1, 0x80, length)
        text = ''.join(map(chr, codes))
        fields: dict[str, Any] = {'question': text}
        if rng.random() < 0.4:
            fields['start'] = float(rng.uniform(-10, newest + 50))
        if rng.random() < 0.4:
            fields['end'] = float(rng.uniform(-10, newest + 50))
        if rng.random() < 0.3:
            fields['last_s'] = float(rng.choice([-5.0, 0.0, 1.0, 1e9, math.nan]))
        if rng.random() < 0.3:
            fields['cameras'] = [str(rng.choice([camera, 'x', '', 'ü' * 50]))]
        if rng.random() < 0.3:
            fields['max_new_tokens'] = int(rng.choice([0, 1, 3, U32_MAX]))
        if rng.random() < 0.3:
            fields['temperature'] = float(rng.choice([-1.0, 0.0, 0.5, 5.0, 5.5, math.nan]))
        yield QCase('random', fields, 'any')


def fill(request: Any, fields: dict[str, Any]) -> Any:
    """Set an Ask request or AskStream goal from a case's fields."""
    request.question = fields.get('question', '')
    if 'start' in fields:
        request.window_start = to_time(max(fields['start'], 0.0))
    if 'end' in fields:
        request.window_end = to_time(max(fields['end'], 0.0))
    request.window_last_s = float(fields.get('last_s', 0.0))
    request.cameras = list(fields.get('cameras', []))
    request.max_new_tokens = int(fields.get('max_new_tokens', 0))
    request.temperature = float(fields.get('temperature', -1.0))
    return request
