"""What the engine's parts share: the configuration, the model, the counters, the stop signal.

One mutable object, owned by :class:`~flash_vstream_ros.engine.engine.Engine` and handed to
each part, so that a model loaded at start or a configuration resized from the checkpoint is
seen by all of them at once. Parts read it; only the engine's lifecycle writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import threading

from flash_vstream_ros.config import AppConfig
from flash_vstream_ros.engine.status import Counters
from flash_vstream_ros.errors import NotReadyError
from flash_vstream_ros.models.base import VisionLanguageModel

POLL_S = 0.1  # how often waiting threads look at their stop and cancel signals


@dataclass
class Runtime:
    """The engine's shared state (see the module docstring)."""

    config: AppConfig
    model: VisionLanguageModel | None = None
    owns_model: bool = True  # loaded by the engine (and so closed by it)
    state: str = 'created'  # created | starting | running | stopping | stopped | failed
    counters: Counters = field(default_factory=Counters)
    stop: threading.Event = field(default_factory=threading.Event)

    def require_model(self) -> VisionLanguageModel:
        if self.model is None:
            raise NotReadyError('the model is not loaded')
        return self.model

    def model_name(self) -> str:
        cfg = self.config.model
        family = self.model.family if self.model is not None else cfg.family
        return f'{family}:{cfg.path}' if cfg.path else family

    def buffer_frames(self) -> int:
        """Thumbnails kept per camera: as many as the memory's feature buffer (at most 2000)."""
        mem = self.config.memory
        frames = mem.star.buffer_frames if mem.kind == 'star' else mem.synopsis.buffer_frames
        return min(frames, 2000)
