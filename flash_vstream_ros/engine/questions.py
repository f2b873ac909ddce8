"""Checking a question before it reaches the model, and resolving its time window.

Decisions (each tested in test/test_engine_questions.py):
* Empty or whitespace-only text, text longer than ``generation.max_question_chars``, and text
  holding control or binary characters (other than tab, newline, carriage return) are refused.
* A reversed window (start > end), a bound that is not integer nanoseconds (int64),
  ``last_s < 0`` or a non-finite ``last_s``, a negative ``max_new_tokens`` and a temperature
  outside [0, 5] are refused, and so is a positive temperature below
  ``config.MIN_TEMPERATURE`` (1e-6: it would overflow the softmax; 0 asks for greedy decoding).
* ``last_s`` counts back from the newest frame of the cameras asked about (all cameras when
  none is named), so a camera whose clock runs elsewhere does not empty the others' window; a
  huge ``last_s`` reaches back to the beginning.
* ``max_new_tokens`` above ``generation.max_new_tokens`` is clamped to it (the config is the
  operator's limit; a caller asking for more still gets an answer).
* A window that matches no memory (entirely before the oldest or after the newest stamp, or a
  camera with nothing in the window) is refused with ``no memory matches ...``: answering from
  zero visual tokens would make the model talk about nothing, which reads like a real answer.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import unicodedata

from flash_vstream_ros.config import GenerationConfig, check_temperature
from flash_vstream_ros.engine.status import Question
from flash_vstream_ros.errors import BadQuestionError
from flash_vstream_ros.memory.base import TimeWindow
from flash_vstream_ros.stamps import clamp_ns, fmt_s, stamp_error, to_ns

ALLOWED_CONTROL = frozenset('\t\n\r')
MAX_TEMPERATURE = 5.0


@dataclass(frozen=True)
class Limits:
    """Generation limits of one question after defaults and clamping."""

    max_new_tokens: int
    temperature: float


def check_text(text: str, max_chars: int) -> str:
    """The question text, stripped; raises BadQuestionError naming what is wrong."""
    if not isinstance(text, str):
        raise BadQuestionError(f'question must be a string, got {type(text).__name__}')
    stripped = text.strip()
    if not stripped:
        raise BadQuestionError('question is empty')
    if len(stripped) > max_chars:
        raise BadQuestionError(
            f'question is {len(stripped)} characters long; the limit is {max_chars} '
            '(generation.max_question_chars)'
        )
    for i, ch in enumerate(stripped):
        if ch in ALLOWED_CONTROL:
            continue
        if unicodedata.category(ch) in ('Cc', 'Cs', 'Co', 'Cn'):
            raise BadQuestionError(
                f'question holds a control or binary character {ch!r} at position {i}'
            )
    return stripped


def check_limits(question: Question, gen: GenerationConfig) -> Limits:
    """Generation limits with config defaults applied and max_new_tokens clamped."""
    if question.max_new_tokens < 0:
        raise BadQuestionError(f'max_new_tokens must be >= 0, got {question.max_new_tokens}')
    tokens = question.max_new_tokens or gen.max_new_tokens
    temperature = gen.temperature if question.temperature is None else question.temperature
    if not math.isfinite(temperature) or not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise BadQuestionError(
            f'temperature must be within [0, {MAX_TEMPERATURE}], got {temperature!r}'
        )
    check_temperature('temperature', temperature, BadQuestionError)
    return Limits(max_new_tokens=min(tokens, gen.max_new_tokens), temperature=temperature)


def check_window(question: Question) -> None:
    """Raise BadQuestionError for a malformed window or last_s."""
    window = question.window
    if window is not None:
        for name, value in (('start', window.start), ('end', window.end)):
            why = None if value is None else stamp_error(value)
            if why is not None:
                raise BadQuestionError(f'window {name}: {why}')
        if window.start is not None and window.end is not None and window.start > window.end:
            raise BadQuestionError(
                f'window is reversed: start {fmt_s(window.start)} s > end {fmt_s(window.end)} s'
            )
    if not math.isfinite(question.last_s) or question.last_s < 0:
        raise BadQuestionError(f'last_s must be a finite number >= 0, got {question.last_s!r}')


def resolve_window(question: Question, newest: int | None) -> TimeWindow | None:
    """The window to read: the question's window, narrowed by last_s before ``newest`` (ns)."""
    window = question.window
    if question.last_s <= 0 or newest is None:
        return window
    back = to_ns(min(question.last_s, 2.0**63 / 1e9))  # a huge last_s: from the beginning
    start = clamp_ns(newest - back)
    if window is None:
        return TimeWindow(start, None)
    lo = start if window.start is None else max(start, window.start)
    return TimeWindow(lo, window.end)


def check_cameras(requested: tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    """The requested cameras (deduplicated, in order), all of them known."""
    unknown = [c for c in requested if c not in known]
    if unknown:
        raise BadQuestionError(
            f'unknown camera(s) {unknown}; cameras in memory: {list(known) or "none yet"}'
        )
    return tuple(dict.fromkeys(requested))
