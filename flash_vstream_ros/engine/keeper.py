"""The memory file keeper: save, load, restore at start and autosave, all atomic.

A file holds every memory of the engine (one per camera, or the shared one) and an identity
(memory kind, camera mode, feature width and part sizes) that a load must match, so a file of
another configuration is refused with a clear error and the running memory stays untouched.
A file that cannot be restored at start is moved aside (``.bad-<time>``), never overwritten.
"""

from __future__ import annotations

import logging
from pathlib import Path
import threading
import time

from flash_vstream_ros.engine.runtime import Runtime
from flash_vstream_ros.engine.status import SaveInfo
from flash_vstream_ros.engine.worker import IngestWorker
from flash_vstream_ros.errors import FlashVStreamError, MemoryFileError, NotReadyError
from flash_vstream_ros.io import persistence
from flash_vstream_ros.memory.base import StreamMemory

log = logging.getLogger(__name__)

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


class MemoryKeeper:
    """Moves the worker's memories to and from memory files."""

    def __init__(self, rt: Runtime, worker: IngestWorker) -> None:
        self._rt = rt
        self._worker = worker
        self._saved_version = 0
        self._thread: threading.Thread | None = None

    def save(self, path: str | None = None) -> SaveInfo:
        """Write every memory to one file atomically (persistence.path when ``path`` is None)."""
        target = self._path(path)
        view = self._worker.current()
        records = []
        for key, snap in view.snapshots:
            tensors, meta = snap.state()
            records.append(persistence.MemoryRecord(key, tensors, meta))
        frames = view.frames_seen()
        info = {**self.identity(), 'frames': frames, 'created': time.time()}
        size = persistence.save_file(target, records, info)
        self._saved_version = view.version
        log.info('memory saved to %s (%d frames, %d bytes)', target, frames, size)
        return SaveInfo(path=target, frames=frames, bytes=size)

    def load(self, path: str | None = None) -> SaveInfo:
        """Replace the memory with a file's; MemoryFileError leaves the current one untouched."""
        if self._rt.model is None:
            raise NotReadyError('load_memory needs the model (call start() first)')
        target = self._path(path)
        loaded = persistence.load_file(target)
        persistence.check_compatible(target, loaded.info, self.identity())
        memories = {rec.key: self._rebuild(target, rec) for rec in loaded.records}
        view = self._worker.replace(memories, forget_pending=False)
        self._saved_version = view.version
        log.info('memory loaded from %s (%d frames)', target, view.frames_seen())
        return SaveInfo(path=target, frames=view.frames_seen(), bytes=loaded.nbytes)

    def _rebuild(self, target: str, rec: persistence.MemoryRecord) -> StreamMemory:
        memory = self._worker.build_memory()
        try:
            memory.load_state(rec.tensors, rec.meta)
        except FlashVStreamError as exc:
            raise MemoryFileError(f'{target}: memory {rec.key!r} refused: {exc}') from exc
        except (ValueError, KeyError, RuntimeError) as exc:
            raise MemoryFileError(f'{target}: memory {rec.key!r} is invalid: {exc}') from exc
        return memory

    def _path(self, path: str | None) -> str:
        target = path or self._rt.config.persistence.path
        if not target:
            raise MemoryFileError('no memory file given and persistence.path is empty')
        return target

    def identity(self) -> dict[str, object]:
        """What a memory file must match to be loaded: kind, camera mode, widths and sizes."""
        model = self._rt.model
        mem = self._rt.config.memory
        part = mem.star if mem.kind == 'star' else mem.synopsis
        return {
            'kind': mem.kind,
            'per_camera': mem.per_camera,
            'feature_dim': model.feature_dim if model is not None else None,
            'sizes': {k: getattr(part, k) for k in SIZE_KEYS[mem.kind]},
        }

    # ------------------------------------------------------------ at start, in the background

    def restore(self) -> None:
        """Load persistence.path at start when configured; a bad file is moved aside."""
        cfg = self._rt.config.persistence
        if not (cfg.restore_on_start and cfg.path):
            return
        if not Path(cfg.path).exists():
            log.info('no memory file at %s yet; starting empty', cfg.path)
            return
        try:
            self.load(cfg.path)
        except MemoryFileError as exc:
            aside = f'{cfg.path}.bad-{time.strftime("%Y%m%d-%H%M%S")}'
            Path(cfg.path).replace(aside)
            log.error(
                'cannot restore memory: %s; moved the file to %s and started empty', exc, aside
            )

    def start_autosave(self) -> None:
        cfg = self._rt.config.persistence
        if cfg.autosave_period_s > 0 and cfg.path:
            self._thread = threading.Thread(
                target=self._autosave_loop, name='fvs-autosave', daemon=True
            )
            self._thread.start()

    def join(self) -> None:
        """Wait for the autosave thread (after the runtime's stop is set)."""
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def _autosave_loop(self) -> None:
        period = self._rt.config.persistence.autosave_period_s
        while not self._rt.stop.wait(period):
            if self._worker.current().version == self._saved_version:
                continue
            try:
                self.save()
            except MemoryFileError:
                log.exception('autosave failed; will retry in %.1f s', period)
