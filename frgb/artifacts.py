"""Writing model files safely: atomic replacement, and a registry that concurrent fits share.

Every file is written to a temporary file in the same folder, flushed to disk and renamed over
the target, so a crash or a full disk leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path

from frgb.errors import FrgbError
from frgb.registry import FRGB_FIELDS, SCHEMA_VERSION, parse_registry, registry_row, with_row

REGISTRY = "registry.json"
#: The fields of a registry row that frgb writes (frgb.registry has the fork's schema).
REGISTRY_KEYS = FRGB_FIELDS


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dumps(data: dict) -> bytes:
    """Canonical JSON bytes (sorted keys, fixed layout) so equal content gives equal bytes."""
    return (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step; on any failure the old file is untouched."""
    replace_together([(Path(path), data)])


def _stage(path: Path, data: bytes) -> str:
    """Write `data` in full to a new temporary file beside `path`, flushed to disk; its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def replace_together(files: list[tuple[Path, bytes]]) -> None:
    """Replace each path with its bytes: every file is first written in full to a temporary file
    and flushed, and only then are they renamed into place, in order. A failure or a kill while
    writing (a full disk, SIGKILL) changes none of them; only the renames, a few system calls,
    separate the first replacement from the last."""
    pending: list[tuple[str, Path]] = []
    replaced: list[str] = []
    path = None
    try:
        for path, data in files:
            pending.append((_stage(path, data), path))
        while pending:
            tmp, path = pending[0]
            os.replace(tmp, path)
            pending.pop(0)
            replaced.append(path.name)
        for folder in dict.fromkeys(p.parent for p, _ in files):
            _fsync_dir(folder)
    except OSError as e:
        reason = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        changed = f"{', '.join(replaced)} already replaced" if replaced else "nothing was changed"
        raise FrgbError(f"could not write {path}: {reason}; {changed}") from None
    finally:
        for tmp, _ in pending:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def _locked(folder: Path):
    try:
        lock = open(folder / f".{REGISTRY}.lock", "a")
    except OSError as e:
        raise FrgbError(f"cannot lock {folder / REGISTRY}: {e.strerror}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_registry_document(folder: Path) -> dict:
    """The whole registry.json of `folder` (an empty one if there is none); FrgbError if unreadable."""
    path = Path(folder) / REGISTRY
    if not path.exists():
        return {"schema_version": SCHEMA_VERSION, "models": []}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise FrgbError(f"{path}: cannot read the registry ({getattr(e, 'strerror', None) or e}); "
                        "nothing was written") from None
    return parse_registry(text, str(path))


def read_registry(folder: Path) -> list[dict]:
    """The rows of `folder`'s registry.json ([] if there is none)."""
    return list(read_registry_document(folder)["models"])


def _registry_with(folder: Path, entry: dict) -> bytes:
    """registry.json with the row of `entry['id']` added or replaced, in the fork's registry schema,
    every other key and row kept (frgb.registry; call under `_locked`)."""
    return dumps(with_row(read_registry_document(folder), registry_row(entry)))


def _remove_stale(folder: Path, names: list[str]) -> None:
    """Temporary files of `names` left by a writer that was killed (call under `_locked`: every
    writer of these names holds the lock, so none of them is still being written)."""
    for name in names:
        for tmp in folder.glob(f".{glob.escape(name)}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_model(folder: Path, name: str, onnx_bytes: bytes, sidecar: dict) -> tuple[Path, Path]:
    """Write `<name>.onnx`, its sidecar `<name>.json` and the registry row, as one replacement.

    The sidecar records the SHA-256 of the .onnx bytes. All three files are written in full
    before any is renamed into place (`replace_together`), .onnx first, so a full disk or a kill
    while writing leaves the previous model, sidecar and registry as they were, and a sidecar
    never describes a file that is not there (only a kill between the three renames could leave
    a new .onnx beside the previous sidecar; the sidecar's sha256 shows it). The registry lock
    is held throughout: concurrent fits into one folder never lose each other's rows, a reader
    holding the lock sees every model whole, and the temporary files of a killed writer are
    removed by the next one.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FrgbError(f"cannot create output folder {folder}: {e.strerror}") from None
    onnx_path, sidecar_path = folder / f"{name}.onnx", folder / f"{name}.json"
    sidecar = {**sidecar, "onnx": onnx_path.name, "sha256": sha256_bytes(onnx_bytes)}
    with _locked(folder):
        _remove_stale(folder, [onnx_path.name, sidecar_path.name, REGISTRY])
        replace_together([
            (onnx_path, onnx_bytes),
            (sidecar_path, dumps(sidecar)),
            (folder / REGISTRY, _registry_with(folder, sidecar)),
        ])
    return onnx_path, sidecar_path
