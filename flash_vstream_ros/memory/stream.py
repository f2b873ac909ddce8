"""What STAR and synopsis memory share: device/dtype, camera table, counters, state plumbing."""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

import torch

from flash_vstream_ros.errors import BadFrameError, MemoryFileError
from flash_vstream_ros.memory.prov import MAX_CAMERAS, Prov
from flash_vstream_ros.memory.snapshot import BufferView, KeyFrames, PartView, Snapshot
from flash_vstream_ros.memory.store import ClusterSet, FrameBuffer


class StreamBase:
    """Common writer state. Subclasses set ``kind`` and build their parts in ``reset``."""

    kind = ''
    buffer: FrameBuffer

    def __init__(
        self, dim: int, device: torch.device | str | None, dtype: torch.dtype | None, seed: int
    ) -> None:
        self.dim = dim
        self.device = torch.device(device) if device is not None else torch.device('cpu')
        self.dtype = dtype if dtype is not None else torch.float32
        self.seed = seed
        self.generator = torch.Generator()
        self._config: dict[str, Any] | None = None

    def config_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _reset_common(self) -> None:
        self.generator.manual_seed(self.seed)
        self.camera_names: list[str] = []
        self.frames = 0

    def _cluster_set(
        self, k: int, side: int, weighted: bool, init: str, iters: int, tol: float
    ) -> ClusterSet:
        return ClusterSet(
            k,
            side,
            self.dim,
            weighted=weighted,
            init=init,
            iters=iters,
            tol=tol,
            generator=self.generator,
            device=self.device,
            dtype=self.dtype,
        )

    def _frame_buffer(self, cap: int | None, side: int, key_side: int) -> FrameBuffer:
        return FrameBuffer(cap, side, key_side, self.dim, self.device, self.dtype)

    def _check_frame(self, features: torch.Tensor, stamp: float) -> torch.Tensor:
        if features.dim() != 3 or features.shape[-1] != self.dim:
            raise BadFrameError(
                f'memory update needs an (H, W, {self.dim}) feature map, got '
                f'shape {tuple(features.shape)}'
            )
        if not math.isfinite(stamp):
            raise BadFrameError(f'memory update needs a finite stamp, got {stamp!r}')
        # a copy: the memory may keep the map itself (a side equal to the grid), and must not
        # alias the caller's tensor (or keep a whole encoder batch alive through a view)
        return features.to(self.device, self.dtype, copy=True)  # (H, W, D)

    def _camera_bit(self, camera: str) -> int:
        if camera not in self.camera_names:
            if len(self.camera_names) >= MAX_CAMERAS:
                raise BadFrameError(
                    f'one memory holds at most {MAX_CAMERAS} cameras; camera '
                    f'{camera!r} is one too many'
                )
            self.camera_names.append(camera)
        return 1 << self.camera_names.index(camera)

    def _snapshot(self, stored: tuple[PartView | KeyFrames, ...], buffer: BufferView) -> Snapshot:
        if self._config is None:
            self._config = self.config_dict()
        return Snapshot(
            kind=self.kind,
            config=self._config,
            dim=self.dim,
            dtype=self.dtype,
            device=self.device,
            camera_names=tuple(self.camera_names),
            frames=self.frames,
            stored=stored,
            buffer=buffer,
            rng=self.generator.get_state(),
        )

    def _check_common(
        self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
    ) -> tuple[list[str], int, torch.Tensor]:
        """Validated (camera names, frames seen, generator state) of a state."""
        cams = meta.get('cameras')
        frames = meta.get('frames_seen')
        if not isinstance(cams, list) or not all(isinstance(c, str) for c in cams):
            raise MemoryFileError(f'memory state cameras must be a list of names, got {cams!r}')
        if not isinstance(frames, int) or frames < 0:
            raise MemoryFileError(f'memory state frames_seen must be an int >= 0, got {frames!r}')
        rng = tensors.get('rng')
        if rng is None or rng.dtype != torch.uint8:
            raise MemoryFileError("memory state lacks the uint8 tensor 'rng'")
        return list(cams), frames, rng.cpu().clone()

    def _load_common(self, common: tuple[list[str], int, torch.Tensor]) -> None:
        self.camera_names, self.frames, rng = common
        self.generator.set_state(rng)

    def _load_buffer(self, maps: torch.Tensor, prov: Prov) -> None:
        self.buffer.load(maps, prov.start.tolist(), prov.cams.tolist())
