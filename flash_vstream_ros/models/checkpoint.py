"""Reading checkpoint folders: config.json, sharded weights, strict loading into modules.

Formats: ``pytorch_model.bin.index.json`` + ``pytorch_model-*.bin`` shards (how the released
Flash-VStream-7b is stored), ``model.safetensors.index.json`` + ``model-*.safetensors``, or a
single ``pytorch_model.bin`` / ``model.safetensors``. Every problem is a :class:`CheckpointError`
that names the folder, the file or the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import json
import logging
from pathlib import Path
from typing import Any

import torch

from flash_vstream_ros.errors import CheckpointError

log = logging.getLogger(__name__)

INDEX_FILES = ('model.safetensors.index.json', 'pytorch_model.bin.index.json')
SINGLE_FILES = ('model.safetensors', 'pytorch_model.bin')

StateDict = dict[str, torch.Tensor]


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; CheckpointError when missing or malformed."""
    if not path.is_file():
        raise CheckpointError(f'missing file {path}')
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f'cannot parse {path}: {exc}') from exc
    if not isinstance(data, dict):
        raise CheckpointError(f'{path} must hold a JSON object, got {type(data).__name__}')
    return data


def shard_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder, in index order; checks that all exist."""
    if not folder.is_dir():
        raise CheckpointError(f'checkpoint folder {str(folder)!r} does not exist')
    for name in INDEX_FILES:
        if (folder / name).is_file():
            return _indexed_shards(folder / name)
    for name in SINGLE_FILES:
        if (folder / name).is_file():
            return [folder / name]
    raise CheckpointError(
        f'no weights in {folder}: expected one of {list(INDEX_FILES + SINGLE_FILES)}'
    )


def _indexed_shards(index_path: Path) -> list[Path]:
    weight_map = read_json(index_path).get('weight_map')
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f'{index_path} has no "weight_map" object')
    names = list(dict.fromkeys(str(v) for v in weight_map.values()))
    paths = [index_path.parent / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise CheckpointError(
            f'{index_path.parent} is incomplete: shard(s) {missing} listed in '
            f'{index_path.name} are missing'
        )
    return paths


def read_shard(path: Path) -> StateDict:
    """All tensors of one weight file (on the CPU); CheckpointError when unreadable."""
    try:
        if path.suffix == '.safetensors':
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        data = torch.load(str(path), map_location='cpu', weights_only=True, mmap=True)
    except Exception as exc:  # torch and safetensors raise many types for a bad file
        raise CheckpointError(
            f'cannot read weight file {path} (truncated or corrupt?): {type(exc).__name__}: {exc}'
        ) from exc
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f'{path} does not hold a flat state dict of tensors')
    return data


def iter_checkpoint(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) over every shard, one shard in memory at a time."""
    for path in shard_files(folder):
        shard = read_shard(path)
        yield from shard.items()
        del shard


def load_into(
    module: torch.nn.Module,
    tensors: Iterator[tuple[str, torch.Tensor]],
    rename: Callable[[str], str | None],
    where: str,
    optional: tuple[str, ...] = (),
) -> set[str]:
    """Copy renamed checkpoint tensors into ``module``'s state; strict about keys and shapes.

    ``rename`` maps a checkpoint name to a state-dict name of ``module`` or None (ignore it).
    Parameters whose name starts with one of ``optional`` may be absent. Returns the checkpoint
    names that were loaded.
    """
    state = module.state_dict(keep_vars=True)
    loaded: set[str] = set()
    unknown: list[str] = []
    with torch.no_grad():
        for name, tensor in tensors:
            target = rename(name)
            if target is None:
                continue
            if target not in state:
                unknown.append(name)
                continue
            _copy_checked(state[target], tensor, name, where)
            loaded.add(target)
    if unknown:
        raise CheckpointError(f'{where}: {len(unknown)} unexpected key(s), e.g. {unknown[:5]}')
    missing = sorted(k for k in state if k not in loaded and not k.startswith(optional))
    if missing:
        raise CheckpointError(f'{where}: {len(missing)} missing key(s), e.g. {missing[:5]}')
    return loaded


def _copy_checked(dest: torch.Tensor, src: torch.Tensor, name: str, where: str) -> None:
    if tuple(dest.shape) != tuple(src.shape):
        raise CheckpointError(
            f'{where}: {name} has shape {tuple(src.shape)}, the model expects '
            f'{tuple(dest.shape)} (does config.json match the weights?)'
        )
    if not (src.is_floating_point() or src.dtype == dest.dtype):
        raise CheckpointError(f'{where}: {name} has dtype {src.dtype}, expected floating point')
    dest.copy_(src)


def weight_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the file that holds it (from the index, or by reading the one file)."""
    for name in INDEX_FILES:
        if (folder / name).is_file():
            shard_files(folder)  # checks the index and that every shard exists
            weight_map = read_json(folder / name)['weight_map']
            return {str(k): folder / str(v) for k, v in weight_map.items()}
    (single,) = shard_files(folder)
    return dict.fromkeys(_file_shapes(single), single)


def tensor_shapes(folder: Path, prefix: str) -> dict[str, tuple[int, ...]]:
    """Shapes of the tensors whose names start with ``prefix`` (reads headers only)."""
    files = {f for n, f in weight_files(folder).items() if n.startswith(prefix)}
    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(files):
        shapes.update({k: s for k, s in _file_shapes(path).items() if k.startswith(prefix)})
    return shapes


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if path.suffix != '.safetensors':
        return {k: tuple(v.shape) for k, v in read_shard(path).items()}  # mmap: no data read
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework='pt') as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f'cannot read weight file {path} (truncated or corrupt?): {type(exc).__name__}: {exc}'
        ) from exc
