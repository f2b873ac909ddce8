"""The real-time engine: ingest frames and answer questions at the same time.

:class:`Engine` is a thin facade over four collaborating parts that share one
:class:`~flash_vstream_ros.engine.runtime.Runtime` (configuration, model, counters, stop signal):

* :class:`~flash_vstream_ros.engine.worker.IngestWorker` owns the memories. Producers call
  :meth:`Engine.submit_frame` (never blocks: sampling by stamp, then a drop-oldest queue); one
  ingest thread encodes what is queued (in batches when behind), folds each frame into its
  memory in stamp order and publishes an immutable view of all snapshots by one reference swap.
* :class:`~flash_vstream_ros.engine.answerer.Answerer` answers on the latest view, one question
  at a time on the model (others wait in a bounded queue or get BusyError), so ingest never
  waits for an answer and an answer never sees a half-written memory.
* :class:`~flash_vstream_ros.engine.keeper.MemoryKeeper` saves, loads, restores and autosaves.
* :mod:`~flash_vstream_ros.engine.status` holds the value types and the running counters.

Multi-camera (``memory.per_camera``): by default every camera gets its own memory (True).
Why: each memory keeps its fixed size per camera, so a busy camera cannot evict another
camera's history from the k-means clusters; a camera question reads exactly its own memory;
and the fill and stamps of each camera are simple to report. Questions across cameras
concatenate per-camera readouts in sorted camera order, each cut to an equal share of
``engine.max_visual_tokens``, so the language model's input stays bounded however many
cameras there are. A shared memory (False) keeps one fixed-size memory for all cameras with
provenance per element: the cheaper choice on a small GPU with many cameras.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import logging
import threading
from typing import Any

import numpy as np
import torch

from flash_vstream_ros.config import AppConfig, GenerationConfig, with_overrides
from flash_vstream_ros.config.budget import enforce_budget
from flash_vstream_ros.engine.answerer import Answerer
from flash_vstream_ros.engine.gate import QuestionGate
from flash_vstream_ros.engine.keeper import MemoryKeeper
from flash_vstream_ros.engine.runtime import Runtime
from flash_vstream_ros.engine.status import Answer, Counters, EngineStatus, Question, SaveInfo
from flash_vstream_ros.engine.view import View
from flash_vstream_ros.engine.worker import IngestWorker
from flash_vstream_ros.errors import NotReadyError
from flash_vstream_ros.memory.base import StreamMemory
from flash_vstream_ros.models.base import TokenCallback, VisionLanguageModel

__all__ = ['Answer', 'Engine', 'EngineStatus', 'Question', 'SaveInfo']

log = logging.getLogger(__name__)

DRAIN_S = 5.0  # longest wait for queued frames at stop
CLOSE_WAIT_S = 60.0  # longest wait for a running answer before the weights are freed


class Engine:
    """Frames in, answers out; see the module docstring for the parts and the threads."""

    def __init__(
        self,
        config: AppConfig,
        model: VisionLanguageModel | None = None,
        *,
        memory_factory: Callable[..., StreamMemory] | None = None,
    ) -> None:
        """``memory_factory`` replaces memory.build_memory (same signature; tests)."""
        self._rt = Runtime(config, model, owns_model=model is None)
        self._worker = IngestWorker(self._rt, memory_factory)
        self._answerer = Answerer(self._rt, self._worker.current, self.status)
        self._keeper = MemoryKeeper(self._rt, self._worker)
        self._config_lock = threading.Lock()

    @property
    def config(self) -> AppConfig:
        return self._rt.config

    @config.setter
    def config(self, config: AppConfig) -> None:
        self._rt.config = config

    def set_generation(self, values: Mapping[str, Any]) -> GenerationConfig:
        """Change generation settings (``{'max_new_tokens': 64}``) in any state, also running.

        Validated first: a ConfigError names the problem and nothing changes. Then one new
        immutable AppConfig is swapped in; a question reads ``config.generation`` once when it
        starts, so it runs on the old or the new settings, never on a mix of both.
        """
        with self._config_lock:  # two changes at once must not lose one of them
            config = self._rt.config
            generation = with_overrides(config.generation, dict(values))
            self._rt.config = dataclasses.replace(config, generation=generation)
        log.info('generation settings: %s', generation)
        return generation

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the model (unless given), restore the memory when configured, start threads."""
        if self._rt.state == 'running':
            return
        try:
            self._start()
        except BaseException:
            self._rt.state = 'failed'
            self._rt.stop.set()
            self._worker.queue.close()
            self._free_model()
            raise

    def _start(self) -> None:
        rt = self._rt
        rt.state = 'starting'
        if rt.model is None:
            from flash_vstream_ros.models import load_model

            enforce_budget(rt.config)  # refuse an impossible profile before reading weights
            rt.model = load_model(rt.config.model)
            rt.owns_model = True
        if rt.config.memory.use_checkpoint_sizes:
            overrides = rt.model.memory_overrides()
            if overrides:
                rt.config = with_overrides(rt.config, overrides)
        enforce_budget(rt.config, rt.model)  # measured weights, final memory sizes
        rt.counters = Counters()
        self._worker.reset()
        self._keeper.restore()
        rt.stop.clear()
        self._answerer.gate.open()
        self._worker.start()
        self._keeper.start_autosave()
        rt.state = 'running'
        log.info(
            'engine running: model %s, memory %s, per_camera=%s',
            rt.model_name(),
            rt.config.memory.kind,
            rt.config.memory.per_camera,
        )

    def stop(self) -> None:
        """Drain the queue, stop the threads, save when configured, free a model we loaded."""
        rt = self._rt
        if rt.state not in ('running', 'starting'):
            return
        rt.state = 'stopping'
        self._worker.queue.wait_idle(DRAIN_S)
        rt.stop.set()
        self._answerer.gate.close()
        left = self._worker.stop()
        self._keeper.join()
        if left:
            rt.counters.add('frames_dropped_queue', left)
            log.warning('%d queued frame(s) were not ingested before shutdown', left)
        try:
            cfg = rt.config.persistence
            if cfg.save_on_shutdown and cfg.path:
                self.save_memory()
        finally:
            self._answerer.gate.wait_free(CLOSE_WAIT_S)  # a running answer finishes first
            self._free_model()
            rt.state = 'stopped'

    def _free_model(self) -> None:
        if self._rt.owns_model and self._rt.model is not None:
            self._rt.model.close()
            self._rt.model = None

    # ------------------------------------------------------------------ ingest

    def submit_frame(self, image: np.ndarray, stamp: int, camera: str) -> bool:
        """Offer one RGB uint8 (H, W, 3) frame stamped ``stamp`` (integer nanoseconds; see
        flash_vstream_ros.stamps); False when skipped by the rate. Never blocks.

        Raises BadFrameError (and counts the frame rejected) for a malformed frame or a stamp
        older than the camera's last accepted frame; NotReadyError before start().
        """
        if self._rt.state != 'running':
            raise NotReadyError(
                f'engine is {self._rt.state}; call start() before submitting frames'
            )
        return self._worker.submit(image, stamp, camera)

    def reject_frame(self, reason: str) -> None:
        """Count a frame that an adapter could not convert (it logs ``reason`` itself)."""
        self._rt.counters.add('frames_received')
        self._rt.counters.add('frames_rejected')
        log.debug('frame rejected: %s', reason)

    def pending(self) -> int:
        """Frames queued and not yet taken by the worker (offline replay paces on this)."""
        return len(self._worker.queue)

    def wait_idle(self, timeout: float) -> bool:
        """True once every submitted frame has been ingested (or dropped)."""
        return self._worker.queue.wait_idle(timeout)

    # ------------------------------------------------------------------ questions

    def ask(
        self,
        question: Question,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answer from the latest memory; see flash_vstream_ros.engine.questions for refusals.

        Raises BadQuestionError, NotReadyError, BusyError or ModelError; a question cancelled
        while waiting or generating returns with stop_reason 'cancelled'.
        """
        return self._answerer.ask(question, on_token, cancel)

    def questions_in_flight(self) -> int:
        """Questions being answered or waiting for the model, from every caller at once.

        The question queue is shared by all callers (an adapter's service and action alike):
        an adapter that admits requests ahead of ask() compares this with
        ``1 + engine.question_queue_size``, so it can refuse at once instead of failing later.
        """
        return self._answerer.gate.in_flight()

    # ------------------------------------------------------------------ status, key frames

    def status(self) -> EngineStatus:
        """Counters, timings, memory fill and GPU memory, read without blocking ingest."""
        rt = self._rt
        view = self._worker.current()
        c = rt.counters.snapshot()
        span = view.span()
        fill = view.fill()
        used, peak = self._gpu_memory()
        return EngineStatus(
            state=rt.state,
            model=rt.model_name(),
            memory_kind=rt.config.memory.kind,
            frames_received=int(c['frames_received']),
            frames_ingested=int(c['frames_ingested']),
            frames_skipped_rate=int(c['frames_skipped_rate']),
            frames_dropped_queue=int(c['frames_dropped_queue']),
            frames_rejected=int(c['frames_rejected']),
            ingest_rate_hz=float(c['ingest_rate_hz']),
            encode_ms=float(c['encode_ms']),
            update_ms=float(c['update_ms']),
            cameras=view.cameras(),
            fill=fill,
            visual_tokens=min(
                sum(u for _, u, _ in fill), view.token_budget(rt.config.engine.max_visual_tokens)
            ),
            memory_bytes=view.nbytes(),
            oldest_stamp=span[0] if span else None,
            newest_stamp=span[1] if span else None,
            questions_answered=int(c['questions_answered']),
            questions_failed=int(c['questions_failed']),
            last_answer_latency_s=float(c['last_answer_latency_s']),
            answer_latency_p50_s=float(c['answer_latency_p50_s']),
            gpu_memory_used_bytes=used,
            gpu_memory_peak_bytes=peak,
            gpu_memory_budget_bytes=rt.config.gpu.max_gpu_memory_mb * 1024 * 1024,
        )

    def _gpu_memory(self) -> tuple[int, int]:
        model = self._rt.model
        if model is None or model.device.type != 'cuda':
            return 0, 0
        return (
            int(torch.cuda.memory_allocated(model.device)),
            int(torch.cuda.max_memory_allocated(model.device)),
        )

    def key_frames(self) -> list[tuple[str, int, np.ndarray]]:
        """(camera, stamp (ns), RGB thumbnail) of the single frames the memory holds, by stamp."""
        return self._worker.key_frames()

    # ------------------------------------------------------------------ memory files

    def reset_memory(self) -> None:
        """Forget everything: memories, thumbnails, queued frames and sampling stamps."""
        self._worker.replace({}, forget_pending=True)
        log.info('memory reset')

    def save_memory(self, path: str | None = None) -> SaveInfo:
        """Write every memory to one file atomically (persistence.path when ``path`` is None)."""
        return self._keeper.save(path)

    def load_memory(self, path: str | None = None) -> SaveInfo:
        """Replace the memory with a file's; MemoryFileError leaves the current one untouched."""
        return self._keeper.load(path)

    # ------------------------------------------------------------------ for tests and tools

    @property
    def _model(self) -> VisionLanguageModel | None:
        return self._rt.model

    @property
    def _gate(self) -> QuestionGate:
        return self._answerer.gate

    def _current(self) -> View:
        return self._worker.current()
