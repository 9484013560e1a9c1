"""Writing model files safely: atomic replacement, and a registry that concurrent fits share.

Every file is written to a temporary file in the same folder, flushed to disk and renamed over
the target, so a crash or a full disk leaves either the old file or the new one, never half.
A set of files (every export of one fit and the registry) is replaced as one: all are staged
first, and a journal lets the renames be undone, at once on a failure and by the next writer
after a kill (see `replace_together`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import math
import os
import secrets
import signal
import tempfile
import threading
from contextvars import ContextVar
from pathlib import Path

from frgb.errors import FrgbError
from frgb.files import read_json
from frgb.registry import SCHEMA_VERSION, registry_problem, registry_row, with_row

REGISTRY = "registry.json"
#: Kept beside the registry while a set of files is being renamed into place (under the
#: registry lock): what to put back if the renames are cut short.
JOURNAL = f".{REGISTRY}.journal"
#: Significant digits of every figure written in a sidecar or registry. Sums of the same
#: numbers in another order (other machines, other BLAS kernels) differ in the last bit or two
#: (about 1e-16 relative); ten digits leave six between that noise and the written value.
FIGURE_DIGITS = 10
#: Written exactly, not as figures: the scaling callers apply (identity, or `--input-scaler`'s).
EXACT_KEYS = frozenset({"feature_mean", "feature_std"})
#: The files the running command has replaced so far, or None (frgb's CLI sets a list for each
#: command, to say on Ctrl-C what was kept).
WRITTEN: ContextVar[list[Path] | None] = ContextVar("frgb_written", default=None)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def figures(value, key: str | None = None):
    """`value` with every float as written: FIGURE_DIGITS significant digits (exact under
    EXACT_KEYS), and null where it is not finite (a correlation of constant scores)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return value if key in EXACT_KEYS else float(f"{value:.{FIGURE_DIGITS}g}")
    if isinstance(value, dict):
        return {k: figures(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [figures(v, key) for v in value]
    return value


def dumps(data: dict) -> bytes:
    """Canonical JSON bytes (sorted keys, fixed layout, `figures`) so equal content gives equal
    bytes, on any machine."""
    return (json.dumps(figures(data), indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


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


def replace_together(files: list[tuple[Path, bytes]], journal: Path | None = None) -> None:
    """Replace each path with its bytes, all or none.

    Every file is first written in full to a temporary file and flushed; a failure or a kill
    while writing (a full disk, SIGKILL) changes none of them. With several files, each existing
    one is then kept under a second name (a hard link), and the new files are renamed into place
    in order. If a rename fails, the ones already made are undone and the error says "nothing
    was changed"; only if undoing fails too does it name the files left replaced. With a
    `journal` (a path in the files' folder, used under the registry lock), what to undo is
    recorded first, so that a kill during the renames is undone by the next writer (`recover`).
    Ctrl-C during the renames waits until they are done. The replaced paths are added to WRITTEN.
    """
    replacement = _Replacement([(Path(p), data) for p, data in files], journal)
    try:
        replacement.run()
    except OSError as e:
        raise FrgbError(replacement.failure(e)) from None
    finally:
        replacement.clean_up()


def _reason(e: OSError) -> str:
    return "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))


class _Replacement:
    """The state of one `replace_together`: staged files, kept previous files, renames made."""

    def __init__(self, files: list[tuple[Path, bytes]], journal: Path | None):
        self.files, self.journal = files, journal
        self.staged: list[tuple[str, Path]] = []
        self.previous: dict[Path, str | None] = {}  # path -> the name its previous file is kept under
        self.replaced: list[Path] = []
        self.path: Path | None = None  # the file being written or renamed
        self.unrestored: OSError | None = None  # why undoing failed (the journal and kept files stay)

    def run(self) -> None:
        for self.path, data in self.files:
            self.staged.append((_stage(self.path, data), self.path))
        if len(self.files) > 1:
            for self.path, _ in self.files:
                self.previous[self.path] = _keep_previous(self.path)
        with _sigint_deferred():
            self._rename_all()

    def _rename_all(self) -> None:
        if self.journal is not None:
            self._write_journal()
        try:
            for tmp, self.path in self.staged:
                os.replace(tmp, self.path)
                self.replaced.append(self.path)
            for folder in dict.fromkeys(p.parent for p, _ in self.files):
                _fsync_dir(folder)
            self._forget_journal()  # the commit: from here on the new files stay
        except OSError:
            self._undo()
            raise
        if (written := WRITTEN.get()) is not None:
            written.extend(self.replaced)

    def _write_journal(self) -> None:
        """Record each path's staged file and kept previous file (None: it had none), durably."""
        self.path = self.journal
        entries = [{"path": p.name, "staged": Path(tmp).name, "previous": self.previous.get(p)}
                   for tmp, p in self.staged]
        os.replace(_stage(self.journal, json.dumps({"files": entries}).encode()), self.journal)
        try:
            _fsync_dir(self.journal.parent)
        except OSError:
            with contextlib.suppress(OSError):
                self.journal.unlink()  # nothing was renamed: the journal has nothing to undo
            raise

    def _undo(self) -> None:
        """Put back the previous file of every path already replaced (remove it if it had none)."""
        try:
            for path in reversed(list(self.replaced)):
                kept = self.previous.get(path)
                if kept:
                    os.replace(path.parent / kept, path)
                else:
                    path.unlink()
                self.replaced.remove(path)
        except OSError as e:
            self.unrestored = e
            return
        with contextlib.suppress(OSError):  # replaying it now would change nothing
            self._forget_journal()

    def _forget_journal(self) -> None:
        if self.journal is not None:
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()
            _fsync_dir(self.journal.parent)

    def failure(self, e: OSError) -> str:
        """The one-line message of a failed replacement: what failed, and exactly what changed."""
        message = f"could not write {self.path}: {_reason(e)}; "
        if not self.replaced:
            return message + "nothing was changed"
        names = ", ".join(p.name for p in self.replaced)
        undo = (f"; the next frgb fit into {self.journal.parent} puts the previous files back"
                if self.journal is not None else "")
        why = _reason(self.unrestored) if self.unrestored else "unknown"
        return message + f"{names} replaced and could not be put back ({why}){undo}"

    def clean_up(self) -> None:
        """Remove the staged files not renamed and the kept previous files, unless undoing failed
        (then the kept files are the only copies, and the journal names them)."""
        if self.unrestored is not None:
            return
        names = [tmp for tmp, _ in self.staged] + [str(p.parent / k) for p, k in self.previous.items() if k]
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(name)


def _keep_previous(path: Path) -> str | None:
    """Keep the current file at `path` under a second, temporary name (a hard link, else a copy);
    None if there is no file there."""
    if not path.exists():
        return None
    kept = path.parent / f".{path.name}.{secrets.token_hex(4)}.previous.tmp"
    try:
        os.link(path, kept)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        return Path(_stage(path, path.read_bytes())).name  # a file system without hard links
    return kept.name


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, then deliver it: renames are never cut short by
    it. (Only the main thread receives signals; elsewhere the block runs as it is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)


def recover(folder: Path) -> list[str]:
    """Undo the renames of a replacement that was killed half-way (its journal is still there):
    every path it names gets its previous file back. Call under `_locked`; returns the names."""
    journal = Path(folder) / JOURNAL
    if not journal.exists():
        return []
    try:
        entries = json.loads(journal.read_text())["files"]
        for entry in entries:
            path, kept = journal.parent / entry["path"], entry["previous"]
            if kept and (journal.parent / kept).exists():
                os.replace(journal.parent / kept, path)
            elif not kept and not (journal.parent / entry["staged"]).exists():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # a new file renamed into place; there was none before
        journal.unlink()
        _fsync_dir(journal.parent)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FrgbError(f"{journal}: a replacement of files in {journal.parent} was cut short, and its journal "
                        f"cannot be replayed ({e}); remove it after checking the files") from None
    return [entry["path"] for entry in entries]


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


def read_registry(folder: Path) -> list[dict]:
    """The rows of `folder`'s registry.json ([] if there is none)."""
    return list(registry_document(Path(folder) / REGISTRY)["models"])


def registry_document(path: Path) -> dict:
    """A registry file's content, checked (frgb.registry.registry_problem), with every key it has
    kept as it is. No file: an empty registry in the fork's schema."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return {"schema_version": SCHEMA_VERSION, "models": []}
    document = read_json(path, "a registry file")
    problem = registry_problem(document)
    if problem:
        raise FrgbError(f"{path}: not a registry file ({problem})")
    return document


def _registry_with(folder: Path, entries: list[dict]) -> bytes:
    """registry.json with the rows of `entries` (sidecars) added or replaced in the fork's schema
    (frgb.registry.with_row; call under `_locked`); its other rows and top-level keys are kept."""
    document = registry_document(folder / REGISTRY)
    for entry in entries:
        document = with_row(document, registry_row(entry))
    return dumps(document)


def _remove_stale(folder: Path, names: list[str]) -> None:
    """Temporary files of `names` left by a writer that was killed (call under `_locked`, after
    `recover`: every writer of these names holds the lock, so none of them is still being written)."""
    for name in names:
        for tmp in folder.glob(f".{glob.escape(name)}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_model(folder: Path, name: str, onnx_bytes: bytes, sidecar: dict) -> tuple[Path, Path]:
    """Write `<name>.onnx`, its sidecar `<name>.json` and the registry row (see `write_models`)."""
    return write_models(folder, [(name, onnx_bytes, sidecar)])[0]


def write_models(folder: Path, models: list[tuple[str, bytes, dict]]) -> list[tuple[Path, Path]]:
    """Write `<name>.onnx` and its sidecar `<name>.json` for every model, and their registry rows,
    as one replacement (`replace_together`): all or none of these files change.

    Each sidecar records the SHA-256 of its .onnx bytes. Every file is written in full before
    any is renamed into place, each .onnx before its sidecar and registry.json last, so a full
    disk or a kill while writing leaves the previous files as they were; a failed rename is
    undone at once, and a kill during the renames by the next writer into the folder (`recover`).
    The registry lock is held throughout: concurrent fits into one folder never lose each other's
    rows, a reader holding the lock sees every model whole, and the temporary files of a killed
    writer are removed by the next one. Returns the (.onnx, sidecar) paths.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FrgbError(f"cannot create output folder {folder}: {e.strerror}") from None
    files, sidecars, paths = [], [], []
    for name, onnx_bytes, sidecar in models:
        onnx_path, sidecar_path = folder / f"{name}.onnx", folder / f"{name}.json"
        sidecar = {**sidecar, "onnx": onnx_path.name, "sha256": sha256_bytes(onnx_bytes)}
        files += [(onnx_path, onnx_bytes), (sidecar_path, dumps(sidecar))]
        sidecars.append(sidecar)
        paths.append((onnx_path, sidecar_path))
    with _locked(folder):
        recover(folder)
        _remove_stale(folder, [p.name for p, _ in files] + [REGISTRY, JOURNAL])
        files.append((folder / REGISTRY, _registry_with(folder, sidecars)))
        replace_together(files, journal=folder / JOURNAL)
    return paths
