"""The model fails (out of memory, CUDA errors) while answering or encoding; the engine lives on.

The tiny model's ``answer`` (or ``encode``) is wrapped so that chosen calls raise what a GPU
raises when it runs out of memory; after each failure the next question must be answered and
ingest must go on.
"""

from __future__ import annotations

from collections.abc import Callable
import threading
import time
from typing import Any

import numpy as np
import torch

from flash_vstream_ros.config import AppConfig, with_overrides
from flash_vstream_ros.engine import Engine, Question
from flash_vstream_ros.errors import FlashVStreamError, ModelError
from flash_vstream_ros.stamps import to_ns
from reliability.report import Row

FAULTS: tuple[Callable[[], BaseException], ...] = (
    lambda: torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB'),
    lambda: RuntimeError('CUDA out of memory. Tried to allocate 512.00 MiB'),
    lambda: RuntimeError('CUDA error: an illegal memory access was encountered'),
    lambda: MemoryError(),
    lambda: ValueError('probability tensor contains either inf, nan or element < 0'),
)


class Faulty:
    """Wraps one model method: the next ``arm()``-ed call raises the given exception."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self._method = method
        self._next: BaseException | None = None
        self._lock = threading.Lock()

    def arm(self, exc: BaseException) -> None:
        with self._lock:
            self._next = exc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            exc, self._next = self._next, None
        if exc is not None:
            raise exc
        return self._method(*args, **kwargs)


def engine_config(cache_dir: str) -> AppConfig:
    return with_overrides(
        AppConfig(),
        {
            'model.family': 'tiny',
            'model.cache_dir': cache_dir,
            'model.device': 'cpu',
            'engine.ingest_rate_hz': 0.0,
            'generation.max_new_tokens': 8,
        },
    )


def _frame(i: int) -> np.ndarray:
    return np.full((48, 64, 3), (i * 37) % 256, dtype=np.uint8)  # (H, W, 3)


def _ask_after_fault(engine: Engine, answer: Faulty, exc: BaseException, row: Row, i: int) -> None:
    answer.arm(exc)
    stream = i % 2 == 1  # every other question streams tokens (the action's path)
    tokens: list[str] = []

    def keep(piece: str, count: int) -> None:
        tokens.append(piece)

    on_token = keep if stream else None
    try:
        engine.ask(Question('What is there?'), on_token)
    except ModelError as err:
        row.errors += 1
        oom = 'out of memory' in str(exc).lower()
        if oom and 'out of memory' not in str(err):
            row.fail(f'{type(exc).__name__} reported without "out of memory": {err}')
    except FlashVStreamError as err:
        row.fail(f'{type(exc).__name__} became {type(err).__name__}, not ModelError: {err}')
    except BaseException as err:
        row.crashes += 1
        row.problems.append(f'{type(exc).__name__} escaped as {type(err).__name__}: {err}')
    else:
        row.fail(f'armed {type(exc).__name__} did not fail the question')
    try:
        ok = engine.ask(Question('And now?'), on_token)
    except Exception as err:
        row.fail(f'question after {type(exc).__name__} failed: {type(err).__name__}: {err}')
        return
    if not ok.text and ok.answer_tokens == 0:
        row.fail(f'empty answer after {type(exc).__name__}')


def _encode_faults(engine: Engine, encode: Faulty, rounds: int, row: Row) -> None:
    """OOM while encoding: that batch is counted rejected, later frames are ingested."""
    stamp = 1000.0
    for i in range(rounds):
        row.tried += 1
        before = engine.status()
        encode.arm(FAULTS[i % 2]())
        for _ in range(3):
            stamp += 1.0
            engine.submit_frame(_frame(i), to_ns(stamp), 'cam')
            engine.wait_idle(30.0)
        after = engine.status()
        if after.frames_rejected <= before.frames_rejected:
            row.fail('an encode failure was not counted as rejected frames')
        if after.frames_ingested <= before.frames_ingested:
            row.fail('no frame ingested after an encode failure')
        row.errors += after.frames_rejected - before.frames_rejected


def run(cache_dir: str, rounds: int) -> Row:
    """``rounds`` injected answer failures and ``rounds`` encode failures on the tiny model."""
    row = Row('faults: model fails (OOM)')
    engine = Engine(engine_config(cache_dir))
    engine.start()
    try:
        model: Any = engine._model  # the engine's own model, so the wrapper sits in its path
        answer, encode = Faulty(model.answer), Faulty(model.encode)
        model.answer, model.encode = answer, encode
        for i in range(4):
            engine.submit_frame(_frame(i), to_ns(float(i + 1)), 'cam')
        engine.wait_idle(30.0)
        t0 = time.monotonic()
        for i in range(rounds):
            row.tried += 1
            _ask_after_fault(engine, answer, FAULTS[i % len(FAULTS)](), row, i)
        _encode_faults(engine, encode, rounds, row)
        status = engine.status()
        if status.state != 'running':
            row.crashes += 1
            row.problems.append(f'engine ended {status.state}')
        row.notes = (
            f'{rounds} answer + {rounds} encode faults in {time.monotonic() - t0:.1f} s; '
            f'{status.questions_answered} answered, {status.questions_failed} failed'
        )
    finally:
        engine.stop()
    return row
