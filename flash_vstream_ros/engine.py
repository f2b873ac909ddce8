"""The real-time engine: ingest frames and answer questions at the same time.

Threads: producers call :meth:`Engine.submit_frame` (never blocks: sampling by stamp, then a
drop-oldest queue); one ingest worker encodes what is queued (in batches when behind), folds
each frame into its memory in stamp order and publishes an immutable view of all snapshots by
one reference swap; questions read the latest view, so ingest never waits for an answer and an
answer never sees a half-written memory. Questions run one at a time on the model; others wait
in a bounded queue or get BusyError.

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

from collections.abc import Callable
from dataclasses import dataclass, field
import logging
from pathlib import Path
import threading
import time

import numpy as np
import torch

from flash_vstream_ros import persistence
from flash_vstream_ros.budget import enforce_budget
from flash_vstream_ros.config import AppConfig, with_overrides
from flash_vstream_ros.errors import (
    BadFrameError,
    BadQuestionError,
    BusyError,
    FlashVStreamError,
    MemoryFileError,
    ModelError,
    NotReadyError,
)
from flash_vstream_ros.ingest import Frame, FrameQueue, RateSampler, Thumbnails, check_frame
from flash_vstream_ros.memory.base import MemorySnapshot, Readout, StreamMemory, TimeWindow
from flash_vstream_ros.models.base import (
    GenerationRequest,
    PromptContext,
    TokenCallback,
    VisionLanguageModel,
)
from flash_vstream_ros.questions import (
    check_cameras,
    check_limits,
    check_text,
    check_window,
    resolve_window,
)
from flash_vstream_ros.readouts import concat_readouts, fit_readout
from flash_vstream_ros.status import Answer, Counters, EngineStatus, Question, SaveInfo

__all__ = ['Answer', 'Engine', 'EngineStatus', 'Question', 'SaveInfo']

log = logging.getLogger(__name__)

SHARED = '*'  # key of the one memory when memory.per_camera is False
KEY_PARTS = ('retrieved', 'spatial', 'detail')  # parts whose elements are single frames
POLL_S = 0.1
SIZE_KEYS = {  # memory config fields that shape the saved state
    'star': (
        'spatial_frames',
        'spatial_size',
        'temporal_clusters',
        'temporal_size',
        'abstract_slots',
        'abstract_size',
        'retrieved_frames',
        'retrieved_size',
        'buffer_frames',
    ),
    'synopsis': ('clusters', 'cluster_size', 'detail_frames', 'detail_size', 'buffer_frames'),
}
INGEST_ERROR_LOG_S = 5.0  # least time between two logged ingest failures


@dataclass(frozen=True)
class _View:
    """What readers see: every memory's snapshot, swapped in as one reference."""

    snapshots: tuple[tuple[str, MemorySnapshot], ...] = ()
    version: int = 0

    def cameras(self) -> tuple[str, ...]:
        return tuple(sorted({c for _, s in self.snapshots for c in s.cameras}))

    def span(self) -> tuple[float, float] | None:
        spans = [sp for _, s in self.snapshots if (sp := s.span()) is not None]
        if not spans:
            return None
        return min(a for a, _ in spans), max(b for _, b in spans)


@dataclass
class _QuestionGate:
    """One question on the model at a time, at most ``size`` waiting."""

    size: int
    cond: threading.Condition = field(default_factory=threading.Condition)
    active: bool = False
    waiting: int = 0
    closed: bool = False


class Engine:
    """Frames in, answers out; see the module docstring for the threading model."""

    def __init__(
        self,
        config: AppConfig,
        model: VisionLanguageModel | None = None,
        *,
        memory_factory: Callable[..., StreamMemory] | None = None,
    ) -> None:
        """``memory_factory`` replaces memory.build_memory (same signature; tests)."""
        self.config = config
        self._memory_factory = memory_factory
        self._model = model
        self._owns_model = model is None
        self._state = 'created'
        self._counters = Counters()
        self._view = _View()
        self._view_lock = threading.Lock()
        self._write_lock = threading.RLock()  # held while memories change (worker, load, reset)
        self._memories: dict[str, StreamMemory] = {}
        self._queue = FrameQueue(config.engine.frame_queue_size)
        self._sampler = RateSampler(config.engine.ingest_rate_hz)
        self._sampler_lock = threading.Lock()
        self._thumbs = Thumbnails(self._buffer_frames())
        self._gate = _QuestionGate(config.engine.question_queue_size)
        self._worker: threading.Thread | None = None
        self._autosaver: threading.Thread | None = None
        self._stop = threading.Event()
        self._saved_version = 0
        self._last_ingest_error = -INGEST_ERROR_LOG_S

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the model (unless given), restore the memory when configured, start threads."""
        if self._state == 'running':
            return
        try:
            self._start()
        except BaseException:
            self._state = 'failed'
            self._stop.set()
            self._queue.close()
            if self._owns_model and self._model is not None:
                self._model.close()
                self._model = None
            raise

    def _start(self) -> None:
        self._state = 'starting'
        if self._model is None:
            from flash_vstream_ros.models import load_model

            enforce_budget(self.config)  # refuse an impossible profile before reading weights
            self._model = load_model(self.config.model)
            self._owns_model = True
        if self.config.memory.use_checkpoint_sizes:
            overrides = self._model.memory_overrides()
            if overrides:
                self.config = with_overrides(self.config, overrides)
        enforce_budget(self.config, self._model)  # measured weights, final memory sizes
        self._reset_state()
        self._restore()
        self._stop.clear()
        self._queue.reopen()
        self._gate.closed = False
        self._worker = threading.Thread(target=self._ingest_loop, name='fvs-ingest', daemon=True)
        self._worker.start()
        if self.config.persistence.autosave_period_s > 0 and self.config.persistence.path:
            self._autosaver = threading.Thread(
                target=self._autosave_loop, name='fvs-autosave', daemon=True
            )
            self._autosaver.start()
        self._state = 'running'
        log.info(
            'engine running: model %s, memory %s, per_camera=%s',
            self._model_name(),
            self.config.memory.kind,
            self.config.memory.per_camera,
        )

    def stop(self) -> None:
        """Drain the queue, stop the threads, save when configured, free a model we loaded."""
        if self._state not in ('running', 'starting'):
            return
        self._state = 'stopping'
        self._queue.wait_idle(5.0)
        self._stop.set()
        self._queue.close()
        with self._gate.cond:
            self._gate.closed = True
            self._gate.cond.notify_all()
        for thread in (self._worker, self._autosaver):
            if thread is not None:
                thread.join()
        self._worker = self._autosaver = None
        left = self._queue.clear()
        if left:
            self._counters.add('frames_dropped_queue', left)
            log.warning('%d queued frame(s) were not ingested before shutdown', left)
        try:
            if self.config.persistence.save_on_shutdown and self.config.persistence.path:
                self.save_memory()
        finally:
            self._close_model()
            self._state = 'stopped'

    def _close_model(self) -> None:
        with self._gate.cond:  # an answer still running finishes before the weights go
            self._gate.cond.wait_for(lambda: not self._gate.active, timeout=60.0)
        if self._owns_model and self._model is not None:
            self._model.close()
            self._model = None

    def _reset_state(self) -> None:
        self._counters = Counters()
        self._memories = {}
        self._queue.clear()
        self._sampler.reset()
        self._thumbs = Thumbnails(self._buffer_frames())
        self._publish(force_empty=True)

    def _buffer_frames(self) -> int:
        mem = self.config.memory
        frames = mem.star.buffer_frames if mem.kind == 'star' else mem.synopsis.buffer_frames
        return min(frames, 2000)

    # ------------------------------------------------------------------ ingest

    def submit_frame(self, image: np.ndarray, stamp: float, camera: str) -> bool:
        """Offer one RGB uint8 (H, W, 3) frame; False when skipped by the rate. Never blocks.

        Raises BadFrameError (and counts the frame rejected) for a malformed frame or a stamp
        older than the camera's last accepted frame; NotReadyError before start().
        """
        if self._state != 'running':
            raise NotReadyError(f'engine is {self._state}; call start() before submitting frames')
        self._counters.add('frames_received')
        try:
            check_frame(image, stamp, camera, self.config.engine.max_image_side)
        except BadFrameError:
            self._counters.add('frames_rejected')
            raise
        with self._sampler_lock:
            verdict = self._sampler.decide(float(stamp), camera)
        if verdict == 'rate':
            self._counters.add('frames_skipped_rate')
            return False
        if verdict == 'back':
            self._counters.add('frames_rejected')
            raise BadFrameError(
                f'stamp {stamp} of camera {camera!r} is older than its last accepted frame'
            )
        if verdict == 'reset':
            log.warning('camera %r: clock jumped back to %.3f s: a restart', camera, stamp)
        if not self._queue.put(Frame(image, float(stamp), camera)):
            self._counters.add('frames_dropped_queue')
        return True

    def reject_frame(self, reason: str) -> None:
        """Count a frame that an adapter could not convert (it logs ``reason`` itself)."""
        self._counters.add('frames_received')
        self._counters.add('frames_rejected')
        log.debug('frame rejected: %s', reason)

    def pending(self) -> int:
        """Frames queued and not yet taken by the worker (offline replay paces on this)."""
        return len(self._queue)

    def wait_idle(self, timeout: float) -> bool:
        """True once every submitted frame has been ingested (or dropped)."""
        return self._queue.wait_idle(timeout)

    def _ingest_loop(self) -> None:
        while not self._stop.is_set():
            batch = self._queue.take(self.config.engine.max_encode_batch, POLL_S)
            if not batch:
                continue
            try:
                self._ingest(batch)
            except Exception:
                self._counters.add('frames_rejected', len(batch))
                now = time.monotonic()
                if now - self._last_ingest_error >= INGEST_ERROR_LOG_S:
                    self._last_ingest_error = now
                    log.exception(
                        'ingest of %d frame(s) failed; counted as rejected (repeats of this '
                        'error are logged at most every %.0f s)',
                        len(batch),
                        INGEST_ERROR_LOG_S,
                    )
            finally:
                self._queue.done()

    def _ingest(self, batch: list[Frame]) -> None:
        assert self._model is not None
        batch.sort(key=lambda f: f.stamp)
        t0 = time.perf_counter()
        features = self._model.encode([f.image for f in batch])  # (B, h, w, D)
        encode_ms = (time.perf_counter() - t0) * 1000.0 / len(batch)
        with self._write_lock:
            for frame, feat in zip(batch, features, strict=True):
                memory = self._memory_for(frame.camera)
                t1 = time.perf_counter()
                memory.update(feat, frame.stamp, frame.camera)  # feat: (h, w, D)
                update_ms = (time.perf_counter() - t1) * 1000.0
                self._thumbs.add(frame.camera, frame.stamp, frame.image)
                self._counters.ingested(encode_ms, update_ms)
            self._publish()

    def _memory_for(self, camera: str) -> StreamMemory:
        key = camera if self.config.memory.per_camera else SHARED
        memory = self._memories.get(key)
        if memory is None:
            memory = self._build_memory()
            self._memories[key] = memory
        return memory

    def _build_memory(self) -> StreamMemory:
        factory = self._memory_factory
        if factory is None:
            from flash_vstream_ros.memory import build_memory

            factory = build_memory
        model = self._model
        assert model is not None
        return factory(
            self.config.memory,
            model.feature_dim,
            qk=model.memory_qk(),
            device=model.device,
            dtype=model.dtype,
        )

    def _publish(self, force_empty: bool = False) -> None:
        """Swap in a view of every memory's current snapshot (called under _write_lock)."""
        snaps = (
            ()
            if force_empty
            else tuple((key, mem.snapshot()) for key, mem in sorted(self._memories.items()))
        )
        with self._view_lock:
            self._view = _View(snaps, self._view.version + 1)

    def _current(self) -> _View:
        with self._view_lock:
            return self._view

    # ------------------------------------------------------------------ questions

    def ask(
        self,
        question: Question,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answer from the latest memory; see flash_vstream_ros.questions for what is refused.

        Raises BadQuestionError, NotReadyError, BusyError or ModelError; a question cancelled
        while waiting or generating returns with stop_reason 'cancelled'.
        """
        t0 = time.monotonic()
        try:
            answer = self._ask(question, on_token, cancel, t0)
        except FlashVStreamError:
            self._counters.add('questions_failed')
            raise
        return answer

    def _ask(
        self,
        question: Question,
        on_token: TokenCallback | None,
        cancel: threading.Event | None,
        t0: float,
    ) -> Answer:
        if self._state != 'running':
            raise NotReadyError(f'engine is {self._state}; no questions before start()')
        text = check_text(question.text, self.config.generation.max_question_chars)
        limits = check_limits(question, self.config.generation)
        check_window(question)
        if not self._enter_gate(cancel):
            return self._finish(t0, '', Readout(_empty_tokens(), (), ()), 0, 'cancelled')
        try:
            readout, context = self._gather(self._current(), question)
            request = GenerationRequest(
                max_new_tokens=limits.max_new_tokens,
                temperature=limits.temperature,
                top_p=self.config.generation.top_p,
            )
            gen = self._generate(readout, text, context, request, on_token, cancel)
        finally:
            self._leave_gate()
        return self._finish(t0, gen.text, readout, gen.tokens, gen.stop_reason)

    def _finish(
        self, t0: float, text: str, readout: Readout, tokens: int, stop_reason: str
    ) -> Answer:
        latency = time.monotonic() - t0
        self._counters.answered(latency)
        return Answer(
            text=text,
            evidence=readout.evidence,
            latency_s=latency,
            answer_tokens=tokens,
            visual_tokens=int(readout.tokens.shape[0]),
            stop_reason=stop_reason,
            status=self.status(),
        )

    def _enter_gate(self, cancel: threading.Event | None) -> bool:
        """Take the model; False when cancelled while waiting. BusyError when the queue is full."""
        gate = self._gate
        with gate.cond:
            if gate.active and gate.waiting >= gate.size:
                raise BusyError(
                    f'busy: one question is being answered and {gate.waiting} wait '
                    f'(engine.question_queue_size={gate.size}); retry later'
                )
            gate.waiting += 1
            try:
                while gate.active and not gate.closed:
                    if cancel is not None and cancel.is_set():
                        return False
                    gate.cond.wait(POLL_S)
                if gate.closed:
                    raise NotReadyError('engine stopped while the question waited')
                gate.active = True
                return True
            finally:
                gate.waiting -= 1

    def _leave_gate(self) -> None:
        with self._gate.cond:
            self._gate.active = False
            self._gate.cond.notify_all()

    def _gather(self, view: _View, question: Question) -> tuple[Readout, PromptContext]:
        known = view.cameras()
        if not known:
            raise BadQuestionError('no memory matches: the memory is empty (no frames yet)')
        cameras = check_cameras(question.cameras, known)
        span = view.span()
        window = resolve_window(question, span[1] if span else None)
        readout = self._read(view, window, cameras)
        if readout.tokens.shape[0] == 0:
            raise BadQuestionError(
                f'no memory matches window {_fmt_window(window)} and cameras '
                f'{list(cameras) or "all"}; memory covers {_fmt_span(span)} from {list(known)}'
            )
        used = tuple(sorted({c for e in readout.evidence for c in e.camera.split(',')}))
        frames = sum(s.frames_seen for _, s in view.snapshots)
        context = PromptContext(span=readout.span, frames_seen=frames, cameras=used)
        return readout, context

    def _read(self, view: _View, window: TimeWindow | None, cameras: tuple[str, ...]) -> Readout:
        budget = self._token_budget(view)
        snaps = dict(view.snapshots)
        if not self.config.memory.per_camera:
            return fit_readout(snaps[SHARED].readout(window, cameras or None), budget)
        keys = cameras or tuple(sorted(snaps))
        share = max(1, budget // len(keys))
        return concat_readouts(
            [(k, fit_readout(snaps[k].readout(window, None), share)) for k in keys]
        )

    def _token_budget(self, view: _View) -> int:
        if self.config.engine.max_visual_tokens > 0:
            return self.config.engine.max_visual_tokens
        return max(
            (sum(cap for _, cap in s.fill().values()) for _, s in view.snapshots), default=0
        )

    def _generate(
        self,
        readout: Readout,
        text: str,
        context: PromptContext,
        request: GenerationRequest,
        on_token: TokenCallback | None,
        cancel: threading.Event | None,
    ) -> _Generation:
        model = self._model
        if model is None:
            raise NotReadyError('the model is not loaded')
        callback = _GuardedCallback(on_token)
        stop = _stop_check(cancel, self._stop)
        try:
            gen = model.answer(
                readout.tokens, text, context, request, callback if on_token else None, stop
            )
        except FlashVStreamError:
            raise
        except Exception as exc:
            callback.reraise()
            raise _model_error(exc) from exc
        return _Generation(gen.text, gen.tokens, gen.stop_reason)

    # ------------------------------------------------------------------ status, key frames

    def status(self) -> EngineStatus:
        """Counters, timings, memory fill and GPU memory, read without blocking ingest."""
        view = self._current()
        c = self._counters.snapshot()
        span = view.span()
        fill = _merge_fill(view)
        budget = self._token_budget(view)
        used, peak = self._gpu_memory()
        return EngineStatus(
            state=self._state,
            model=self._model_name(),
            memory_kind=self.config.memory.kind,
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
            visual_tokens=min(sum(u for _, u, _ in fill), budget),
            memory_bytes=sum(s.nbytes for _, s in view.snapshots),
            oldest_stamp=span[0] if span else None,
            newest_stamp=span[1] if span else None,
            questions_answered=int(c['questions_answered']),
            questions_failed=int(c['questions_failed']),
            last_answer_latency_s=float(c['last_answer_latency_s']),
            answer_latency_p50_s=float(c['answer_latency_p50_s']),
            gpu_memory_used_bytes=used,
            gpu_memory_peak_bytes=peak,
            gpu_memory_budget_bytes=self.config.gpu.max_gpu_memory_mb * 1024 * 1024,
        )

    def _model_name(self) -> str:
        cfg = self.config.model
        family = self._model.family if self._model is not None else cfg.family
        return f'{family}:{cfg.path}' if cfg.path else family

    def _gpu_memory(self) -> tuple[int, int]:
        model = self._model
        if model is None or model.device.type != 'cuda':
            return 0, 0
        return (
            int(torch.cuda.memory_allocated(model.device)),
            int(torch.cuda.max_memory_allocated(model.device)),
        )

    def key_frames(self) -> list[tuple[str, float, np.ndarray]]:
        """(camera, stamp, RGB thumbnail) of the single frames the memory holds, by stamp."""
        seen: dict[tuple[str, float], np.ndarray] = {}
        for _, snap in self._current().snapshots:
            for ev in snap.readout().evidence:
                if ev.part not in KEY_PARTS or (ev.camera, ev.stamp) in seen:
                    continue
                thumb = self._thumbs.get(ev.camera, ev.stamp)
                if thumb is not None:
                    seen[(ev.camera, ev.stamp)] = thumb
        return [
            (cam, stamp, img)
            for (cam, stamp), img in sorted(seen.items(), key=lambda kv: kv[0][1])
        ]

    # ------------------------------------------------------------------ persistence

    def reset_memory(self) -> None:
        """Forget everything: memories, thumbnails, queued frames and sampling stamps."""
        with self._write_lock:
            self._queue.clear()
            self._memories = {}
            with self._sampler_lock:
                self._sampler.reset()
            self._thumbs.clear()
            self._publish()
        log.info('memory reset')

    def save_memory(self, path: str | None = None) -> SaveInfo:
        """Write every memory to one file atomically (persistence.path when ``path`` is None)."""
        target = self._path(path)
        view = self._current()
        records = []
        for key, snap in view.snapshots:
            tensors, meta = snap.state()
            records.append(persistence.MemoryRecord(key, tensors, meta))
        frames = sum(s.frames_seen for _, s in view.snapshots)
        size = persistence.save_file(
            target, records, {**self._file_identity(), 'frames': frames, 'created': time.time()}
        )
        self._saved_version = view.version
        log.info('memory saved to %s (%d frames, %d bytes)', target, frames, size)
        return SaveInfo(path=target, frames=frames, bytes=size)

    def load_memory(self, path: str | None = None) -> SaveInfo:
        """Replace the memory with a file's; MemoryFileError leaves the current one untouched."""
        if self._model is None:
            raise NotReadyError('load_memory needs the model (call start() first)')
        target = self._path(path)
        loaded = persistence.load_file(target)
        persistence.check_compatible(target, loaded.info, self._file_identity())
        memories = {}
        for rec in loaded.records:
            memory = self._build_memory()
            try:
                memory.load_state(rec.tensors, rec.meta)
            except FlashVStreamError as exc:
                raise MemoryFileError(f'{target}: memory {rec.key!r} refused: {exc}') from exc
            except (ValueError, KeyError, RuntimeError) as exc:
                raise MemoryFileError(f'{target}: memory {rec.key!r} is invalid: {exc}') from exc
            memories[rec.key] = memory
        with self._write_lock:
            self._memories = memories
            self._thumbs.clear()
            self._publish()
            self._saved_version = self._view.version
        frames = sum(s.frames_seen for _, s in self._current().snapshots)
        log.info('memory loaded from %s (%d frames)', target, frames)
        return SaveInfo(path=target, frames=frames, bytes=loaded.nbytes)

    def _path(self, path: str | None) -> str:
        target = path or self.config.persistence.path
        if not target:
            raise MemoryFileError('no memory file given and persistence.path is empty')
        return target

    def _file_identity(self) -> dict[str, object]:
        """What a memory file must match to be loaded: kind, camera mode, widths and sizes."""
        model = self._model
        mem = self.config.memory
        part = mem.star if mem.kind == 'star' else mem.synopsis
        sizes = {k: getattr(part, k) for k in SIZE_KEYS[mem.kind]}
        return {
            'kind': mem.kind,
            'per_camera': mem.per_camera,
            'feature_dim': model.feature_dim if model is not None else None,
            'sizes': sizes,
        }

    def _restore(self) -> None:
        cfg = self.config.persistence
        if not (cfg.restore_on_start and cfg.path):
            return
        if not Path(cfg.path).exists():
            log.info('no memory file at %s yet; starting empty', cfg.path)
            return
        try:
            self.load_memory(cfg.path)
        except MemoryFileError as exc:
            aside = f'{cfg.path}.bad-{time.strftime("%Y%m%d-%H%M%S")}'
            Path(cfg.path).replace(aside)
            log.error(
                'cannot restore memory: %s; moved the file to %s and started empty', exc, aside
            )

    def _autosave_loop(self) -> None:
        period = self.config.persistence.autosave_period_s
        while not self._stop.wait(period):
            if self._current().version == self._saved_version:
                continue
            try:
                self.save_memory()
            except MemoryFileError:
                log.exception('autosave failed; will retry in %.1f s', period)


@dataclass(frozen=True)
class _Generation:
    text: str
    tokens: int
    stop_reason: str


class _GuardedCallback:
    """Wraps on_token so that its own exceptions pass through unchanged (not as ModelError)."""

    def __init__(self, callback: TokenCallback | None) -> None:
        self._callback = callback
        self._error: BaseException | None = None

    def __call__(self, token: str) -> None:
        if self._callback is None:
            return
        try:
            self._callback(token)
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


def _model_error(exc: Exception) -> ModelError:
    text = str(exc)
    oom = type(exc).__name__ == 'OutOfMemoryError' or 'out of memory' in text.lower()
    if oom:
        _free_cuda_cache()
        return ModelError(
            f'the model ran out of memory while answering ({text.strip()[:200]}); '
            'try fewer max_new_tokens or a smaller memory'
        )
    return ModelError(f'the model failed while answering: {type(exc).__name__}: {text[:300]}')


def _free_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _empty_tokens() -> torch.Tensor:
    return torch.zeros(0, 0)  # (0, D)


def _merge_fill(view: _View) -> tuple[tuple[str, int, int], ...]:
    """Fill per part summed over memories, in readout order."""
    merged: dict[str, list[int]] = {}
    for _, snap in view.snapshots:
        for part, (used, cap) in snap.fill().items():
            slot = merged.setdefault(part, [0, 0])
            slot[0] += used
            slot[1] += cap
    return tuple((part, u, c) for part, (u, c) in merged.items())


def _fmt_window(window: TimeWindow | None) -> str:
    if window is None:
        return '[any]'
    lo = '-inf' if window.start is None else f'{window.start:.3f}'
    hi = '+inf' if window.end is None else f'{window.end:.3f}'
    return f'[{lo}, {hi}]'


def _fmt_span(span: tuple[float, float] | None) -> str:
    return 'nothing' if span is None else f'[{span[0]:.3f}, {span[1]:.3f}]'
