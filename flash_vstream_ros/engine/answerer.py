"""The answering side: check a question, read the memory it asks about, generate the answer.

A question is checked first (flash_vstream_ros.engine.questions says what is refused), then
waits at the :class:`QuestionGate`, then reads the latest :class:`View`: a window and a camera
filter select what the readout holds, cut to ``engine.max_visual_tokens`` (per camera an equal
share, so the language model's input stays bounded however many cameras there are). The model
then streams tokens to the caller's callback until EOS, the token limit or a cancel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import threading
import time

import torch

from flash_vstream_ros.engine.gate import QuestionGate
from flash_vstream_ros.engine.questions import (
    check_cameras,
    check_limits,
    check_text,
    check_window,
    resolve_window,
)
from flash_vstream_ros.engine.readouts import concat_readouts, fit_readout, token_layout
from flash_vstream_ros.engine.runtime import Runtime
from flash_vstream_ros.engine.status import Answer, EngineStatus, Question
from flash_vstream_ros.engine.view import SHARED, View
from flash_vstream_ros.errors import (
    BadQuestionError,
    FlashVStreamError,
    ModelError,
    NotReadyError,
)
from flash_vstream_ros.memory.base import Readout, TimeWindow
from flash_vstream_ros.models.base import GenerationRequest, PromptContext, TokenCallback
from flash_vstream_ros.stamps import fmt_s


@dataclass(frozen=True)
class _Generation:
    text: str
    tokens: int
    stop_reason: str


class Answerer:
    """Answers questions on the views that ``current`` returns, one at a time on the model."""

    def __init__(
        self,
        rt: Runtime,
        current: Callable[[], View],
        status: Callable[[], EngineStatus],
    ) -> None:
        self._rt = rt
        self._current = current
        self._status = status
        self.gate = QuestionGate(rt.config.engine.question_queue_size)

    def ask(
        self,
        question: Question,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answer from the latest memory; a failed question is counted and re-raised."""
        t0 = time.monotonic()
        try:
            return self._ask(question, on_token, cancel, t0)
        except FlashVStreamError:
            self._rt.counters.add('questions_failed')
            raise

    def _ask(
        self,
        question: Question,
        on_token: TokenCallback | None,
        cancel: threading.Event | None,
        t0: float,
    ) -> Answer:
        if self._rt.state != 'running':
            raise NotReadyError(f'engine is {self._rt.state}; no questions before start()')
        generation = self._rt.config.generation
        text = check_text(question.text, generation.max_question_chars)
        limits = check_limits(question, generation)
        check_window(question)
        if not self.gate.enter(cancel):
            return self._finish(t0, '', Readout(_empty_tokens(), (), ()), 0, 'cancelled')
        try:
            readout, context = self._gather(self._current(), question)
            request = GenerationRequest(
                max_new_tokens=limits.max_new_tokens,
                temperature=limits.temperature,
                top_p=generation.top_p,
                time_context=generation.time_context,
            )
            gen = self._generate(readout, text, context, request, on_token, cancel)
        finally:
            self.gate.leave()
        return self._finish(t0, gen.text, readout, gen.tokens, gen.stop_reason)

    def _finish(
        self, t0: float, text: str, readout: Readout, tokens: int, stop_reason: str
    ) -> Answer:
        latency = time.monotonic() - t0
        self._rt.counters.answered(latency)
        return Answer(
            text=text,
            evidence=readout.evidence,
            latency_s=latency,
            answer_tokens=tokens,
            visual_tokens=int(readout.tokens.shape[0]),
            stop_reason=stop_reason,
            status=self._status(),
        )

    # ------------------------------------------------------------------ reading the memory

    def _gather(self, view: View, question: Question) -> tuple[Readout, PromptContext]:
        known = view.cameras()
        if not known:
            raise BadQuestionError('no memory matches: the memory is empty (no frames yet)')
        cameras = check_cameras(question.cameras, known)
        span = view.span()
        asked = view.span(cameras)  # "the last N s" before the newest frame of these cameras
        window = resolve_window(question, asked[1] if asked else None)
        readout = self._read(view, window, cameras)
        if readout.tokens.shape[0] == 0:
            raise BadQuestionError(
                f'no memory matches window {_fmt_window(window)} and cameras '
                f'{list(cameras) or "all"}; memory covers {_fmt_span(span)} from {list(known)}'
            )
        used = tuple(sorted({c for e in readout.evidence for c in e.camera.split(',')}))
        context = PromptContext(
            span=readout.span,
            frames_seen=view.frames_seen(),
            cameras=used,
            layout=token_layout(readout),
        )
        return readout, context

    def _read(self, view: View, window: TimeWindow | None, cameras: tuple[str, ...]) -> Readout:
        budget = view.token_budget(self._rt.config.engine.max_visual_tokens)
        snaps = dict(view.snapshots)
        if not self._rt.config.memory.per_camera:
            return fit_readout(snaps[SHARED].readout(window, cameras or None), budget)
        keys = cameras or tuple(sorted(snaps))
        share = max(1, budget // len(keys))
        return concat_readouts(
            [(k, fit_readout(snaps[k].readout(window, None), share)) for k in keys]
        )

    # ------------------------------------------------------------------ generating

    def _generate(
        self,
        readout: Readout,
        text: str,
        context: PromptContext,
        request: GenerationRequest,
        on_token: TokenCallback | None,
        cancel: threading.Event | None,
    ) -> _Generation:
        model = self._rt.require_model()
        callback = _GuardedCallback(on_token)
        stop = _stop_check(cancel, self._rt.stop)
        try:
            gen = model.answer(
                readout.tokens, text, context, request, callback if on_token else None, stop
            )
        except FlashVStreamError:
            raise
        except Exception as exc:
            callback.reraise()
            raise model_error(exc) from exc
        return _Generation(gen.text, gen.tokens, gen.stop_reason)


class _GuardedCallback:
    """Wraps on_token so that its own exceptions pass through unchanged (not as ModelError)."""

    def __init__(self, callback: TokenCallback | None) -> None:
        self._callback = callback
        self._error: BaseException | None = None

    def __call__(self, piece: str, tokens: int) -> None:
        if self._callback is None:
            return
        try:
            self._callback(piece, tokens)
        except BaseException as exc:
            self._error = exc
            raise

    def reraise(self) -> None:
        if self._error is not None:
            raise self._error


def _stop_check(cancel: threading.Event | None, stopping: threading.Event) -> Callable[[], bool]:
    if cancel is None:
        return stopping.is_set
    return lambda: cancel.is_set() or stopping.is_set()


def model_error(exc: Exception) -> ModelError:
    """A model's failure as a ModelError that says what to do (out of memory: frees the cache)."""
    text = str(exc)
    oom = type(exc).__name__ == 'OutOfMemoryError' or 'out of memory' in text.lower()
    if oom:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return ModelError(
            f'the model ran out of memory while answering ({text.strip()[:200]}); '
            'try fewer max_new_tokens or a smaller memory'
        )
    return ModelError(f'the model failed while answering: {type(exc).__name__}: {text[:300]}')


def _empty_tokens() -> torch.Tensor:
    return torch.zeros(0, 0)  # (0, D)


def _fmt_window(window: TimeWindow | None) -> str:
    if window is None:
        return '[any]'
    lo = '-inf' if window.start is None else fmt_s(window.start)
    hi = '+inf' if window.end is None else fmt_s(window.end)
    return f'[{lo}, {hi}] s'


def _fmt_span(span: tuple[int, int] | None) -> str:
    return 'nothing' if span is None else f'[{fmt_s(span[0])}, {fmt_s(span[1])}] s'
