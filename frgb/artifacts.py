"""Writing model files safely: atomic replacement, and a registry that concurrent fits share.

Every file is written to a temporary file in the same folder, flushed to disk and renamed over
the target, so a crash or a full disk leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path

from frgb.errors import FrgbError

REGISTRY = "registry.json"
REGISTRY_KEYS = ("id", "kind", "onnx", "opset", "sha256", "notes", "smoke")


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
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        reason = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise FrgbError(f"could not write {path}: {reason}; nothing was changed") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def _locked(folder: Path):
    with open(folder / f".{REGISTRY}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_registry(folder: Path) -> list[dict]:
    path = Path(folder) / REGISTRY
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text())["models"])
    except (ValueError, KeyError, TypeError):
        raise FrgbError(f"{path}: not a registry file (expected {{\"models\": [...]}})") from None


def register(folder: Path, entry: dict) -> None:
    """Add or replace the registry row of `entry['id']` (locked against concurrent fits)."""
    folder = Path(folder)
    row = {k: entry[k] for k in REGISTRY_KEYS if k != "smoke"}
    row["smoke"] = bool(entry.get("training", {}).get("smoke", False))
    with _locked(folder):
        rows = [r for r in read_registry(folder) if r.get("id") != row["id"]] + [row]
        atomic_write(folder / REGISTRY, dumps({"models": sorted(rows, key=lambda r: r["id"])}))


def write_model(folder: Path, name: str, onnx_bytes: bytes, sidecar: dict) -> tuple[Path, Path]:
    """Write `<name>.onnx` and its sidecar `<name>.json`, then the registry row.

    The sidecar records the SHA-256 of the .onnx bytes; the .onnx is renamed into place first,
    so a sidecar never describes a file that is not there.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FrgbError(f"cannot create output folder {folder}: {e.strerror}") from None
    onnx_path, sidecar_path = folder / f"{name}.onnx", folder / f"{name}.json"
    sidecar = {**sidecar, "onnx": onnx_path.name, "sha256": sha256_bytes(onnx_bytes)}
    atomic_write(onnx_path, onnx_bytes)
    atomic_write(sidecar_path, dumps(sidecar))
    register(folder, sidecar)
    return onnx_path, sidecar_path
