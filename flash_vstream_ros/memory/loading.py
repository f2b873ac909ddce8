"""Reading a saved memory state back: every check before anything is replaced.

Loading checks values, not only shapes: finite maps and caches, weights >= 1, start <= end,
mean offsets within the span, camera bits of known cameras; a format_version 1 file (float
second stamps) is refused with the reason. Each function raises MemoryFileError naming the
tensor or field and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from flash_vstream_ros.errors import MemoryFileError
from flash_vstream_ros.memory.prov import MAX_CAMERAS, Prov
from flash_vstream_ros.memory.snapshot import FORMAT_VERSION


def check_meta(meta: Mapping[str, Any], kind: str, config: dict[str, Any], dim: int) -> None:
    """Raise MemoryFileError unless ``meta`` was written by a memory like this one."""
    version = meta.get('format_version')
    if version == 1:
        raise MemoryFileError(
            'memory state format_version 1 (float-second stamps) is not supported: this '
            'version keeps stamps as integer nanoseconds; record the memory again'
        )
    if version != FORMAT_VERSION:
        raise MemoryFileError(
            f'memory state format_version {version!r} is not supported (expected {FORMAT_VERSION})'
        )
    if meta.get('kind') != kind:
        raise MemoryFileError(
            f'memory state kind {meta.get("kind")!r} does not match this memory ({kind!r})'
        )
    if meta.get('dim') != dim:
        raise MemoryFileError(
            f'memory state feature dim {meta.get("dim")!r} does not match this memory ({dim})'
        )
    saved = meta.get('config')
    if saved != config:
        diff = sorted(
            k for k in set(config) | set(saved or {}) if (saved or {}).get(k) != config.get(k)
        )
        raise MemoryFileError(
            f'memory state config differs from this memory in {diff}: saved '
            f'{ {k: (saved or {}).get(k) for k in diff} }, now '
            f'{ {k: config.get(k) for k in diff} }'
        )


def part_from_state(
    tensors: Mapping[str, torch.Tensor],
    name: str,
    side: int,
    dim: int,
    max_n: int | None,
    n_cams: int = MAX_CAMERAS,
) -> tuple[torch.Tensor, Prov]:
    """Validated (maps (n, s, s, D), Prov) of one part from a state dict (shapes and values)."""
    key = f'{name}.maps'
    if key not in tensors:
        raise MemoryFileError(f'memory state lacks tensor {key!r}')
    maps = tensors[key]
    n = maps.shape[0] if maps.dim() == 4 else -1
    if tuple(maps.shape[1:]) != (side, side, dim) or (max_n is not None and n > max_n):
        raise MemoryFileError(
            f'memory state tensor {key!r} has shape {tuple(maps.shape)}, '
            f'expected (n<={max_n}, {side}, {side}, {dim})'
        )
    if not maps.is_floating_point() or not bool(torch.isfinite(maps).all()):
        raise MemoryFileError(f'memory state tensor {key!r} holds non-finite values (NaN or inf)')
    fields = []
    for f in Prov.FIELDS:
        t = tensors.get(f'{name}.{f}')
        want = Prov.DTYPES[f]
        if t is None or tuple(t.shape) != (n,) or t.dtype != want:
            got = None if t is None else f'{tuple(t.shape)} {t.dtype}'
            raise MemoryFileError(
                f'memory state tensor {name}.{f!s} is {got}, expected ({n},) {want}'
            )
        fields.append(t.to('cpu'))
    prov = Prov(*fields)
    check_prov(prov, name, n_cams)
    return maps, prov


def check_prov(prov: Prov, name: str, n_cams: int) -> None:
    """Raise MemoryFileError for provenance no memory can have produced."""
    bad = None
    if not bool(torch.isfinite(prov.off).all() & torch.isfinite(prov.weight).all()):
        bad = 'non-finite weights or stamp offsets'
    elif bool((prov.weight < 1.0).any()):
        bad = 'a weight below 1 (every element stands for at least one frame)'
    elif bool((prov.start > prov.end).any()):
        bad = 'an element whose start stamp is after its end'
    elif _off_out_of_span(prov):
        bad = 'a mean stamp outside its span'
    elif bool((prov.cams <= 0).any() | (prov.cams >= (1 << n_cams)).any()):
        bad = f'camera bits outside the {n_cams} camera(s) the state names'
    if bad is not None:
        raise MemoryFileError(f'memory state part {name!r} holds {bad}')


def _off_out_of_span(prov: Prov) -> bool:
    span = (prov.end - prov.start).to(torch.float64)
    limit = prov.weight * span * (1.0 + 1e-9) + 1.0  # rounding slack: a fraction of a ns
    return bool(((prov.off < 0) | (prov.off > limit)).any())


def sse_from_state(tensors: Mapping[str, torch.Tensor], name: str, n: int) -> torch.Tensor:
    """The validated (n,) float64 squared errors of timeline part ``name``."""
    sse = tensors.get(f'{name}.sse')
    if sse is None or tuple(sse.shape) != (n,) or sse.dtype != torch.float64:
        got = None if sse is None else f'{tuple(sse.shape)} {sse.dtype}'
        raise MemoryFileError(f'memory state tensor {name}.sse is {got}, expected ({n},) float64')
    if not bool(torch.isfinite(sse).all()) or bool((sse < 0).any()):
        raise MemoryFileError(f'memory state tensor {name}.sse holds negative or NaN errors')
    return sse


def dist_from_state(tensors: Mapping[str, torch.Tensor], name: str, n: int) -> torch.Tensor:
    """The validated (n, n) distance cache of cluster part ``name``."""
    dist = tensors.get(f'{name}.dist')
    if dist is None or tuple(dist.shape) != (n, n) or not dist.is_floating_point():
        got = None if dist is None else tuple(dist.shape)
        raise MemoryFileError(
            f'memory state tensor {name}.dist has shape {got}, expected ({n}, {n}) floats'
        )
    if not bool(torch.isfinite(dist).all()) or bool((dist < 0).any()):
        raise MemoryFileError(f'memory state tensor {name}.dist holds negative or NaN distances')
    return dist
