"""The ingest side: accept frames without blocking, fold them into the memories, publish views.

Producers call :meth:`IngestWorker.submit` (sampling by stamp, then a drop-oldest queue; never
blocks). One thread encodes what is queued (in batches when behind), folds each frame into its
camera's memory in stamp order and publishes an immutable :class:`View` of every snapshot by
one reference swap, so readers never wait for ingest and never see a half-written memory.
"""

from __future__ import annotations

from collections.abc import Callable
import logging
import threading
import time

import numpy as np

from flash_vstream_ros.engine.ingest import (
    Frame,
    FrameQueue,
    RateSampler,
    Thumbnails,
    check_frame,
)
from flash_vstream_ros.engine.runtime import POLL_S, Runtime
from flash_vstream_ros.engine.view import SHARED, View
from flash_vstream_ros.errors import BadFrameError
from flash_vstream_ros.memory.base import StreamMemory
from flash_vstream_ros.stamps import fmt_s

log = logging.getLogger(__name__)

INGEST_ERROR_LOG_S = 5.0  # least time between two logged ingest failures
# parts whose elements are single frames
KEY_PARTS = ('retrieved', 'spatial', 'detail', 'recent', 'frames', 'timeline_frames')


class IngestWorker:
    """Owns the memories, the frame queue, the sampler and the thumbnails."""

    def __init__(
        self, rt: Runtime, memory_factory: Callable[..., StreamMemory] | None = None
    ) -> None:
        """``memory_factory`` replaces memory.build_memory (same signature; tests)."""
        self._rt = rt
        self._memory_factory = memory_factory
        self.queue = FrameQueue(rt.config.engine.frame_queue_size)
        self._sampler = RateSampler(rt.config.engine.ingest_rate_hz)
        self._sampler_lock = threading.Lock()
        self._thumbs = Thumbnails(rt.buffer_frames())
        self.write_lock = threading.RLock()  # held while memories change (worker, load, reset)
        self._memories: dict[str, StreamMemory] = {}
        self._view = View()
        self._view_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_error = -INGEST_ERROR_LOG_S

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Empty memories, queue, sampler and thumbnails (at start)."""
        self._memories = {}
        self.queue.clear()
        self._sampler.reset()
        self._thumbs = Thumbnails(self._rt.buffer_frames())
        self._publish(force_empty=True)

    def start(self) -> None:
        self.queue.reopen()
        self._thread = threading.Thread(target=self._loop, name='fvs-ingest', daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Close the queue, join the thread; the number of frames left unprocessed."""
        self.queue.close()
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        return self.queue.clear()

    # ------------------------------------------------------------------ producers

    def submit(self, image: np.ndarray, stamp: int, camera: str) -> bool:
        """Offer one frame (checked, sampled, queued); False when skipped by the rate."""
        counters = self._rt.counters
        counters.add('frames_received')
        try:
            check_frame(image, stamp, camera, self._rt.config.engine.max_image_side)
        except BadFrameError:
            counters.add('frames_rejected')
            raise
        with self._sampler_lock:
            verdict = self._sampler.decide(int(stamp), camera)
        if verdict == 'rate':
            counters.add('frames_skipped_rate')
            return False
        if verdict == 'back':
            counters.add('frames_rejected')
            raise BadFrameError(
                f'stamp {fmt_s(int(stamp))} s of camera {camera!r} is older than its last '
                'accepted frame'
            )
        if verdict == 'reset':
            log.warning('camera %r: clock jumped back to %s s: a restart', camera, fmt_s(stamp))
        if not self.queue.put(Frame(image, int(stamp), camera)):
            counters.add('frames_dropped_queue')
        return True

    # ------------------------------------------------------------------ the thread

    def _loop(self) -> None:
        while not self._rt.stop.is_set():
            batch = self.queue.take(self._rt.config.engine.max_encode_batch, POLL_S)
            if not batch:
                continue
            try:
                self._ingest(batch)
            except Exception:
                self._rt.counters.add('frames_rejected', len(batch))
                self._log_failure(len(batch))
            finally:
                self.queue.done()

    def _log_failure(self, frames: int) -> None:
        now = time.monotonic()
        if now - self._last_error < INGEST_ERROR_LOG_S:
            return
        self._last_error = now
        log.exception(
            'ingest of %d frame(s) failed; counted as rejected (repeats of this error are '
            'logged at most every %.0f s)',
            frames,
            INGEST_ERROR_LOG_S,
        )

    def _ingest(self, batch: list[Frame]) -> None:
        model = self._rt.require_model()
        batch.sort(key=lambda f: f.stamp)
        t0 = time.perf_counter()
        features = model.encode([f.image for f in batch])  # (B, h, w, D)
        encode_ms = (time.perf_counter() - t0) * 1000.0 / len(batch)
        with self.write_lock:
            for frame, feat in zip(batch, features, strict=True):
                memory = self._memory_for(frame.camera)
                t1 = time.perf_counter()
                memory.update(feat, frame.stamp, frame.camera)  # feat: (h, w, D)
                update_ms = (time.perf_counter() - t1) * 1000.0
                self._thumbs.add(frame.camera, frame.stamp, frame.image)
                self._rt.counters.ingested(encode_ms, update_ms)
            self._publish()

    def _memory_for(self, camera: str) -> StreamMemory:
        key = camera if self._rt.config.memory.per_camera else SHARED
        memory = self._memories.get(key)
        if memory is None:
            memory = self.build_memory()
            self._memories[key] = memory
        return memory

    # ------------------------------------------------------------------ memories and views

    def build_memory(self) -> StreamMemory:
        """A new empty memory for the loaded model (its width, q/k, device and dtype)."""
        factory = self._memory_factory
        if factory is None:
            from flash_vstream_ros.memory import build_memory

            factory = build_memory
        model = self._rt.require_model()
        return factory(
            self._rt.config.memory,
            model.feature_dim,
            qk=model.memory_qk(),
            device=model.device,
            dtype=model.dtype,
        )

    def replace(self, memories: dict[str, StreamMemory], *, forget_pending: bool) -> View:
        """Swap in other memories (a loaded file, or {} to forget); the new view.

        ``forget_pending`` also drops the queued frames and the sampling stamps (a reset);
        a load keeps them, so frames already accepted go into the loaded memory.
        """
        with self.write_lock:
            if forget_pending:
                self.queue.clear()
                with self._sampler_lock:
                    self._sampler.reset()
            self._memories = memories
            self._thumbs.clear()
            return self._publish()

    def _publish(self, force_empty: bool = False) -> View:
        """Swap in a view of every memory's current snapshot (called under write_lock)."""
        snaps = (
            ()
            if force_empty
            else tuple((key, mem.snapshot()) for key, mem in sorted(self._memories.items()))
        )
        with self._view_lock:
            self._view = View(snaps, self._view.version + 1)
            return self._view

    def current(self) -> View:
        with self._view_lock:
            return self._view

    def key_frames(self) -> list[tuple[str, int, np.ndarray]]:
        """(camera, stamp, RGB thumbnail) of the single frames the memory holds, by stamp."""
        seen: dict[tuple[str, int], np.ndarray] = {}
        for _, snap in self.current().snapshots:
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
