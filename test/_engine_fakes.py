"""Small deterministic stand-ins for a model and a memory, for engine tests that must be quick.

FakeModel implements the VisionLanguageModel protocol: encode() maps a frame to a (4, 4, 8) map
derived from its mean colour; answer() echoes 'w0 w1 ...' through on_token, checks should_stop
before every token, and can sleep per token or raise an injected error.
FakeMemory implements StreamMemory with two parts: 'temporal' (at most 6 elements of 2 tokens,
the two oldest merged when full) and 'spatial' (the newest frame, 4 tokens).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
import threading
import time
from typing import Any

import numpy as np
import torch

from flash_vstream_ros.memory.base import Evidence, Readout, TimeWindow
from flash_vstream_ros.models.base import (
    Generation,
    GenerationRequest,
    PromptContext,
    StopCheck,
    TokenCallback,
)

DIM = 8


class FakeModel:
    family = 'fake'
    device = torch.device('cpu')
    dtype = torch.float32
    feature_grid = (4, 4)
    feature_dim = DIM

    def __init__(self, token_delay_s: float = 0.0) -> None:
        self.token_delay_s = token_delay_s
        self.fail_next: Exception | None = None
        self.last_tokens: torch.Tensor | None = None
        self.last_context: PromptContext | None = None
        self.last_request: GenerationRequest | None = None
        self.started = threading.Event()
        self.encoded = 0
        self.closed = False

    def encode(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        maps = []
        for frame in frames:
            mean = torch.tensor(frame.reshape(-1, 3).mean(axis=0) / 255.0, dtype=torch.float32)
            vec = torch.cat([mean, mean**2, mean[:2]])  # (8,)
            maps.append(vec.expand(4, 4, DIM).clone())  # (4, 4, 8)
        self.encoded += len(frames)
        return torch.stack(maps)  # (B, 4, 4, 8)

    def memory_qk(self) -> None:
        return None

    def memory_overrides(self) -> dict[str, Any]:
        return {}

    def answer(
        self,
        tokens: torch.Tensor,
        question: str,
        context: PromptContext,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> Generation:
        self.last_tokens = tokens
        self.last_context = context
        self.last_request = request
        self.started.set()
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        words: list[str] = []
        for i in range(request.max_new_tokens):
            if should_stop is not None and should_stop():
                return Generation(' '.join(words), len(words), 'cancelled')
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            word = f'w{i}'
            words.append(word)
            if on_token is not None:
                on_token(word, len(words))
        return Generation(' '.join(words), len(words), 'length')

    def parameter_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class _Elem:
    tokens: torch.Tensor  # (n, D)
    ev: Evidence


class FakeSnapshot:
    def __init__(self, temporal: tuple[_Elem, ...], spatial: _Elem | None, frames: int) -> None:
        self._temporal = temporal
        self._spatial = spatial
        self._frames = frames

    @property
    def frames_seen(self) -> int:
        return self._frames

    @property
    def nbytes(self) -> int:
        return sum(e.tokens.numel() * 4 for e in self._elems())

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(sorted({c for e in self._elems() for c in e.ev.camera.split(',')}))

    def _elems(self) -> list[_Elem]:
        return list(self._temporal) + ([self._spatial] if self._spatial else [])

    def span(self) -> tuple[int, int] | None:
        elems = self._elems()
        if not elems:
            return None
        return min(e.ev.start for e in elems), max(e.ev.end for e in elems)

    def fill(self) -> dict[str, tuple[int, int]]:
        return {
            'temporal': (2 * len(self._temporal), 12),
            'spatial': (4 if self._spatial else 0, 4),
        }

    def readout(
        self, window: TimeWindow | None = None, cameras: Collection[str] | None = None
    ) -> Readout:
        def keep(e: _Elem) -> bool:
            ok_t = window is None or window.overlaps(e.ev.start, e.ev.end)
            ok_c = not cameras or any(c in cameras for c in e.ev.camera.split(','))
            return ok_t and ok_c

        temporal = [e for e in self._temporal if keep(e)]
        spatial = [self._spatial] if self._spatial and keep(self._spatial) else []
        chosen = temporal + spatial
        tokens = torch.cat([e.tokens for e in chosen]) if chosen else torch.zeros(0, DIM)
        parts = (('temporal', 2 * len(temporal)), ('spatial', 4 * len(spatial)))
        return Readout(tokens, parts, tuple(e.ev for e in chosen))

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f't{i}': e.tokens for i, e in enumerate(self._temporal)}
        evs = [_ev_dict(e.ev) for e in self._temporal]
        if self._spatial is not None:
            tensors['spatial'] = self._spatial.tokens
        meta = {
            'frames': self._frames,
            'temporal': evs,
            'spatial': _ev_dict(self._spatial.ev) if self._spatial else None,
        }
        return tensors, meta


def _ev_dict(ev: Evidence) -> dict[str, Any]:
    return {
        'part': ev.part,
        'camera': ev.camera,
        'stamp': ev.stamp,
        'start': ev.start,
        'end': ev.end,
        'weight': ev.weight,
    }


class FakeMemory:
    CAP = 6

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._temporal: list[_Elem] = []
        self._spatial: _Elem | None = None
        self._frames = 0

    def update(self, features: torch.Tensor, stamp: int, camera: str) -> None:
        pooled = features.mean(dim=(0, 1))  # (D,)
        self._frames += 1
        ev = Evidence('temporal', camera, stamp, stamp, stamp, 1.0)
        self._temporal.append(_Elem(torch.stack([pooled, pooled * 2]), ev))  # (2, D)
        if len(self._temporal) > self.CAP:
            a, b = self._temporal[0], self._temporal[1]
            w = a.ev.weight + b.ev.weight
            cams = ','.join(sorted(set(a.ev.camera.split(',')) | set(b.ev.camera.split(','))))
            merged = Evidence(
                'temporal', cams, (a.ev.stamp + b.ev.stamp) // 2, a.ev.start, b.ev.end, w
            )
            self._temporal[:2] = [_Elem((a.tokens + b.tokens) / 2, merged)]
        self._spatial = _Elem(
            pooled.expand(4, DIM).clone(), Evidence('spatial', camera, stamp, stamp, stamp, 1.0)
        )

    def snapshot(self) -> FakeSnapshot:
        return FakeSnapshot(tuple(self._temporal), self._spatial, self._frames)

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        self.reset()
        self._frames = int(meta['frames'])
        for i, ev in enumerate(meta['temporal']):
            self._temporal.append(_Elem(tensors[f't{i}'].clone(), Evidence(**ev)))
        if meta['spatial'] is not None:
            self._spatial = _Elem(tensors['spatial'].clone(), Evidence(**meta['spatial']))


def fake_build_memory(
    cfg: object, dim: int, qk: object = None, device: object = None, dtype: object = None
) -> FakeMemory:
    return FakeMemory()
