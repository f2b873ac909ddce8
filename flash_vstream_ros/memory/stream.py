"""What STAR and synopsis memory share: device/dtype, camera table, counters, state plumbing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from flash_vstream_ros.config import TimelineConfig, to_dict
from flash_vstream_ros.errors import BadFrameError, MemoryFileError
from flash_vstream_ros.memory.loading import part_from_state, sse_from_state
from flash_vstream_ros.memory.prov import MAX_CAMERAS, Prov
from flash_vstream_ros.memory.snapshot import BufferView, KeyFrames, PartView, Snapshot
from flash_vstream_ros.memory.store import ClusterSet, FrameBuffer
from flash_vstream_ros.memory.timeline import Timeline
from flash_vstream_ros.stamps import stamp_error


class StreamBase:
    """Common writer state. Subclasses set ``kind`` and build their parts in ``reset``."""

    kind = ''
    buffer: FrameBuffer

    def __init__(
        self,
        dim: int,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        seed: int,
        timeline: TimelineConfig | None,
    ) -> None:
        self.dim = dim
        self.device = torch.device(device) if device is not None else torch.device('cpu')
        self.dtype = dtype if dtype is not None else torch.float32
        self.seed = seed
        self.timeline_cfg = timeline if timeline is not None else TimelineConfig(segments=0)
        self.generator = torch.Generator()
        self._config: dict[str, Any] | None = None

    def config_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _with_timeline(self, own: dict[str, Any]) -> dict[str, Any]:
        """The memory's config as saved: its own section plus the timeline's (when on)."""
        if self.timeline_cfg.segments == 0:
            return own
        return {**own, 'timeline': to_dict(self.timeline_cfg)}

    def _timeline_sides(self) -> set[int]:
        t = self.timeline_cfg
        return {t.segment_size, t.frame_size} if t.segments else set()

    def _add_to_timeline(self, pooled: dict[int, torch.Tensor], one: Prov) -> None:
        t = self.timeline_cfg
        if t.segments:
            # copies: the timeline's maps never share storage with another part's, so the
            # memory's bytes are the same whatever the buffer holds (flat once full)
            mean, frame = pooled[t.segment_size].clone(), pooled[t.frame_size].clone()
            self.timeline.add(mean, frame, one)

    def _timeline_parts(self) -> tuple[PartView, ...]:
        return self.timeline.views() if self.timeline_cfg.segments else ()

    def _timeline_from_state(
        self, tensors: Mapping[str, torch.Tensor], n_cams: int
    ) -> tuple[torch.Tensor, Prov, torch.Tensor, Prov, torch.Tensor] | None:
        """The validated timeline of a state (checked before anything is replaced)."""
        t = self.timeline_cfg
        if not t.segments:
            return None
        means = part_from_state(tensors, 'timeline', t.segment_size, self.dim, t.segments, n_cams)
        frames = part_from_state(
            tensors, 'timeline_frames', t.frame_size, self.dim, t.segments, n_cams
        )
        if means[0].shape[0] != frames[0].shape[0]:
            raise MemoryFileError('memory state timeline and timeline_frames differ in length')
        return (*means, *frames, sse_from_state(tensors, 'timeline', means[0].shape[0]))

    def _load_timeline(
        self, loaded: tuple[torch.Tensor, Prov, torch.Tensor, Prov, torch.Tensor] | None
    ) -> None:
        if loaded is not None:
            self.timeline.load(*loaded)

    def _reset_common(self) -> None:
        self.generator.manual_seed(self.seed)
        self.camera_names: list[str] = []
        self.frames = 0
        t = self.timeline_cfg
        self.timeline = Timeline(t.segments, t.segment_size, t.frame_size, self.device, self.dtype)

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

    def _check_frame(self, features: torch.Tensor, stamp: int) -> torch.Tensor:
        if features.dim() != 3 or features.shape[-1] != self.dim:
            raise BadFrameError(
                f'memory update needs an (H, W, {self.dim}) feature map, got '
                f'shape {tuple(features.shape)}'
            )
        why = stamp_error(stamp)
        if why is not None:
            raise BadFrameError(f'memory update: {why}')
        # a copy: the memory may keep the map itself (a side equal to the grid), and must not
        # alias the caller's tensor (or keep a whole encoder batch alive through a view)
        return features.to(self.device, self.dtype, copy=True)  # (H, W, D)

    def _camera_bit(self, camera: str) -> int:
        if not isinstance(camera, str) or not camera or ',' in camera or '\x00' in camera:
            raise BadFrameError(
                f'camera name must be a non-empty string without "," or NUL, got {camera!r}'
            )
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
        if not isinstance(cams, list) or not all(_good_name(c) for c in cams):
            raise MemoryFileError(f'memory state cameras must be a list of names, got {cams!r}')
        if len(set(cams)) != len(cams) or len(cams) > MAX_CAMERAS:
            raise MemoryFileError(f'memory state cameras must be distinct, at most {MAX_CAMERAS}')
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


def _good_name(name: object) -> bool:
    return isinstance(name, str) and bool(name) and ',' not in name and '\x00' not in name
