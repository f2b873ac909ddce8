"""Memory files: every memory of an engine in ONE safetensors file, written atomically.

Layout: a standard safetensors file. Tensors are named ``m<i>.<name>`` (memory ``i``, the
memory's own tensor name); the header's ``__metadata__`` holds two strings:
``format`` (``flash_vstream_ros.memory``) and ``info``, a JSON document with the format
version, the memory kind, feature width, per-camera mode, each memory's key (camera name or
``*`` for a shared memory) and metadata, a sha256 over every tensor's name, dtype, shape
and bytes, and (format 2) ``info_sha256`` over the rest of the info document, so a changed
camera name or frame count in the metadata is refused like changed tensor bytes. One file
means one ``os.replace``: a reader sees the old file or the new one, never a mixture. A save
writes a temporary file (named with the writer's pid) in the same folder, fsyncs it, renames
it over the target and fsyncs the folder; a crash at any point leaves the previous file
intact, and the next save removes temporary files whose writer is no longer running.

Loading refuses (``MemoryFileError``) a missing, truncated, corrupt (checksum mismatch) or
foreign file, and a format version it does not know. :func:`check_header` reads only the
header, so a caller can refuse a foreign file before it loads a model for seconds.

File mode: a save over an existing file keeps that file's permission bits (a file shared as
0644 stays readable by others); a new file is created owner-only (0600, what ``mkstemp``
gives), because a memory holds features of everything the cameras saw. Any OS failure while
saving (missing or read-only folder, a parent that is a file, a full disk) is a
``MemoryFileError`` naming the path and the OS reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import contextlib
from dataclasses import dataclass, field
import hashlib
import json
import logging
import os
from pathlib import Path
import stat
import struct
import tempfile
from typing import TYPE_CHECKING, Any, BinaryIO

from flash_vstream_ros.errors import MemoryFileError

if TYPE_CHECKING:  # torch is imported where tensors are handled: `info` stays quick
    import torch

log = logging.getLogger(__name__)

FORMAT = 'flash_vstream_ros.memory'
FORMAT_VERSION = 2  # 2: the checksum covers the info document too
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class MemoryRecord:
    """One memory's state: its key (camera, or '*' for a shared memory), tensors and metadata."""

    key: str
    tensors: Mapping[str, torch.Tensor]
    meta: Mapping[str, Any]


@dataclass(frozen=True)
class MemoryFile:
    """What a memory file holds."""

    info: dict[str, Any]  # kind, feature_dim, per_camera, frames, created...
    records: list[MemoryRecord] = field(default_factory=list)
    nbytes: int = 0


def save_file(path: str | Path, records: Sequence[MemoryRecord], info: Mapping[str, Any]) -> int:
    """Write ``records`` atomically to ``path``; returns the file size in bytes."""
    from safetensors.torch import save

    target = Path(path)
    _refuse_foreign(target)
    tensors: dict[str, torch.Tensor] = {}
    entries = []
    for i, rec in enumerate(records):
        for name, tensor in rec.tensors.items():
            tensors[f'm{i}.{name}'] = tensor.detach().to('cpu').contiguous().clone()
        entries.append({'key': rec.key, 'meta': _jsonable(rec.meta, rec.key)})
    doc = {
        **dict(info),
        'format_version': FORMAT_VERSION,
        'memories': entries,
        'sha256': tensor_digest(tensors),
    }
    doc['info_sha256'] = info_digest(doc)
    try:
        blob = save(tensors, metadata={'format': FORMAT, 'info': json.dumps(doc)})
    except Exception as exc:
        raise MemoryFileError(f'cannot serialise the memory for {target}: {exc}') from exc
    _write_atomic(target, blob)
    return len(blob)


def check_save_target(path: str | Path) -> None:
    """Refuse, before any work, a save that would fail: no folder, a folder, a foreign file.

    Callers that save only after a long replay check first, so a typo in the path costs
    nothing; the save itself checks again (the folder may go away meanwhile).
    """
    target = Path(path)
    _target_folder(target)
    if target.is_dir():
        raise MemoryFileError(f'cannot save memory to {target}: it is a folder')
    _refuse_foreign(target)


def _refuse_foreign(target: Path) -> None:
    """Never replace a file that is not a memory file of a version this build reads."""
    if not target.exists():
        return
    try:
        read_info(target)
    except MemoryFileError as exc:
        raise MemoryFileError(
            f'refusing to overwrite {target}: {exc}; remove it or save to another path'
        ) from exc


def _jsonable(meta: Mapping[str, Any], key: str) -> Any:
    try:
        return json.loads(json.dumps(dict(meta)))
    except (TypeError, ValueError) as exc:
        raise MemoryFileError(
            f'metadata of memory {key!r} is not JSON-serialisable: {exc}'
        ) from exc


def _write_atomic(target: Path, blob: bytes) -> None:
    folder = _target_folder(target)
    mode = _existing_mode(target)
    try:
        _remove_dead_temps(folder, target.name)
        prefix = f'.{target.name}.{os.getpid()}.'  # the pid tells whose temporary file it is
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix='.tmp', dir=folder)
    except OSError as exc:
        raise _save_error(target, exc) from exc
    try:
        with os.fdopen(fd, 'wb') as out:
            out.write(blob)
            if mode is not None:
                os.fchmod(out.fileno(), mode)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        _remove_quietly(tmp)
        if isinstance(exc, OSError):
            raise _save_error(target, exc) from exc
        raise
    _fsync_folder(folder)


def _target_folder(target: Path) -> Path:
    """The folder a save writes into; refused early when it is missing or not a folder."""
    folder = target.parent if str(target.parent) else Path('.')
    if folder.is_dir():
        return folder
    if folder.exists():
        raise MemoryFileError(f'cannot save memory to {target}: {folder} is not a folder')
    raise MemoryFileError(f'cannot save memory to {target}: folder {folder} does not exist')


def _existing_mode(target: Path) -> int | None:
    """Permission bits of the file a save replaces (None for a new file: mkstemp's 0600)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return None


def _save_error(target: Path, exc: OSError) -> MemoryFileError:
    """An OS failure as a MemoryFileError naming the path and the OS's reason."""
    reason = exc.strerror or type(exc).__name__
    return MemoryFileError(f'cannot save memory to {target}: {reason} ({exc})')


def _remove_dead_temps(folder: Path, name: str) -> None:
    """Delete temporary files of saves to ``name`` whose process died (SIGKILL, power loss)."""
    prefix = f'.{name}.'
    for entry in os.listdir(folder):
        if not (entry.startswith(prefix) and entry.endswith('.tmp')):
            continue
        pid = entry[len(prefix) :].split('.', 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        _remove_quietly(str(folder / entry))
        log.warning('removed %s, left by a process that died while saving', folder / entry)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_quietly(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory fds: the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (names sorted)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to('cpu').contiguous()
        digest.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return digest.hexdigest()


def info_digest(info: Mapping[str, Any]) -> str:
    """sha256 over the info document without its own digest (canonical JSON)."""
    body = {k: v for k, v in info.items() if k != 'info_sha256'}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def check_header(path: str | Path) -> dict[str, Any]:
    """The info of a memory file, or MemoryFileError: cheap, so callers check before a model loads.

    Reads the header only (a few kilobytes), so a foreign file (a video passed to ``--load``)
    is refused in milliseconds; the full checks (checksums, tensors) come with load_file.
    """
    return read_info(path)


def read_info(path: str | Path) -> dict[str, Any]:
    """The JSON info of a memory file, reading only its header (no checksum check)."""
    target = Path(path)
    try:
        with target.open('rb') as f:
            raw = _read_header(target, f)
    except FileNotFoundError as exc:
        raise MemoryFileError(f'memory file {target} does not exist') from exc
    except IsADirectoryError as exc:
        raise MemoryFileError(f'memory file {target} is a folder') from exc
    except MemoryFileError:
        raise  # an OSError too: already says what is wrong
    except OSError as exc:
        raise MemoryFileError(f'cannot read memory file {target}: {exc.strerror or exc}') from exc
    return _parse_header(target, raw)


def _read_header(target: Path, f: BinaryIO) -> bytes:
    """The JSON header bytes; refuses what cannot start a safetensors file.

    A safetensors file starts with the header's length (8 bytes, little endian) and then the
    JSON header itself, which starts with '{'. Any other file (text, a video) read that way
    gives an absurd length; naming that length would only confuse, so the message says what
    the file is not and shows its first bytes.
    """
    head = f.read(9)
    if len(head) < 9:
        raise MemoryFileError(
            f'{target} is not a flash_vstream_ros memory file: only {len(head)} bytes'
        )
    (size,) = struct.unpack('<Q', head[:8])
    if not 2 <= size <= MAX_HEADER_BYTES or head[8:9] != b'{':
        raise MemoryFileError(
            f'{target} is not a flash_vstream_ros memory file: no safetensors header '
            f'(bad magic / implausible header length; it starts with {head[:8]!r})'
        )
    raw = bytes(head[8:]) + f.read(size - 1)
    if len(raw) < size:
        raise MemoryFileError(f'{target} is truncated: header cut at {len(raw)} of {size} bytes')
    return raw


def _parse_header(target: Path, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw)
        meta = header['__metadata__']
        fmt = meta['format']
    except (ValueError, KeyError, TypeError) as exc:
        raise MemoryFileError(f'{target} is not a flash_vstream_ros memory file') from exc
    if fmt != FORMAT:
        raise MemoryFileError(f'{target} is not a flash_vstream_ros memory file (format {fmt!r})')
    try:
        info = json.loads(meta['info'])
    except (ValueError, KeyError, TypeError) as exc:
        raise MemoryFileError(f'{target} has a corrupt info header: {exc}') from exc
    version = info.get('format_version') if isinstance(info, dict) else None
    if version != FORMAT_VERSION:
        raise MemoryFileError(
            f'{target} has memory format version {version!r}; this build reads version '
            f'{FORMAT_VERSION}'
        )
    return info


def load_file(path: str | Path) -> MemoryFile:
    """Read and verify a memory file; MemoryFileError says why one is refused."""
    from safetensors.torch import load

    target = Path(path)
    info = read_info(target)
    try:
        blob = target.read_bytes()
    except OSError as exc:
        raise MemoryFileError(f'cannot read memory file {target}: {exc}') from exc
    try:
        tensors = load(blob)
    except Exception as exc:  # safetensors raises its own error type for any malformed file
        raise MemoryFileError(f'{target} is truncated or corrupt: {exc}') from exc
    if tensor_digest(tensors) != info.get('sha256'):
        raise MemoryFileError(f'{target} is corrupt: tensor checksum mismatch')
    if info_digest(info) != info.get('info_sha256'):
        raise MemoryFileError(f'{target} is corrupt: header checksum mismatch')
    return MemoryFile(info=info, records=_split(target, info, tensors), nbytes=len(blob))


def _split(
    target: Path, info: dict[str, Any], tensors: Mapping[str, torch.Tensor]
) -> list[MemoryRecord]:
    entries = info.get('memories')
    if not isinstance(entries, list):
        raise MemoryFileError(f'{target} has no list of memories in its header')
    records = []
    for i, entry in enumerate(entries):
        prefix = f'm{i}.'
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not isinstance(entry, dict) or not isinstance(entry.get('key'), str):
            raise MemoryFileError(f'{target}: memory entry {i} is malformed')
        records.append(MemoryRecord(key=entry['key'], tensors=own, meta=entry.get('meta', {})))
    return records


def check_compatible(
    target: str | Path, info: Mapping[str, Any], expected: Mapping[str, Any]
) -> None:
    """Refuse a file whose kind, feature width or camera mode differ from the engine's."""
    for key, want in expected.items():
        got = info.get(key)
        if got != want:
            raise MemoryFileError(
                f'{target} is incompatible: it holds {key}={got!r}, this engine has {want!r}'
            )
