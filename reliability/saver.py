"""Worker of the kill-during-save test: restore a memory file, then update and save in a loop.

    python -m reliability.saver PATH DIM

Loads PATH (it must exist: the parent saves a good file first), then forever: folds one random
frame into the memory and saves it to PATH with :func:`persistence.save_file` (temporary file,
fsync, rename), printing ``saved <frames>`` after each save returns. The parent kills it with
SIGKILL at a random moment and checks that PATH still loads.
"""

from __future__ import annotations

import sys

import torch

from flash_vstream_ros.config import MemoryConfig
from flash_vstream_ros.io import persistence
from flash_vstream_ros.memory import build_memory
from flash_vstream_ros.memory.base import StreamMemory

CAMERA = 'cam'


def new_memory(dim: int) -> StreamMemory:
    return build_memory(MemoryConfig(), dim)


def fold(memory: StreamMemory, frames: int, dim: int, seed: int) -> None:
    """Fold ``frames`` random feature maps into ``memory`` (stamps continue from its count)."""
    gen = torch.Generator().manual_seed(seed)
    start = memory.snapshot().frames_seen
    for i in range(frames):
        feat = torch.randn(16, 16, dim, generator=gen)  # (h, w, D)
        memory.update(feat, (start + i + 1) * 1_000_000_000, CAMERA)  # 1 s apart, in ns


def save(memory: StreamMemory, path: str) -> int:
    """Save ``memory`` alone to ``path``; returns its frame count."""
    snap = memory.snapshot()
    tensors, meta = snap.state()
    record = persistence.MemoryRecord(CAMERA, tensors, meta)
    persistence.save_file(path, [record], {'kind': 'star', 'frames': snap.frames_seen})
    return snap.frames_seen


def restore(path: str, dim: int) -> StreamMemory:
    """The memory saved in ``path`` (raises MemoryFileError or a load_state error)."""
    loaded = persistence.load_file(path)
    memory = new_memory(dim)
    memory.load_state(loaded.records[0].tensors, loaded.records[0].meta)
    return memory


def main(argv: list[str]) -> int:
    path, dim = argv[0], int(argv[1])
    torch.set_num_threads(1)
    memory = restore(path, dim)
    print(f'ready {memory.snapshot().frames_seen}', flush=True)
    seed = memory.snapshot().frames_seen
    while True:
        seed += 1
        fold(memory, 1, dim, seed)
        print(f'saved {save(memory, path)}', flush=True)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
