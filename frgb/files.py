"""Reading the files a user hands frgb besides the corpus: nothing in them is trusted.

A registry, a sidecar, a VMAF model file, an op allowlist, an `--input-scaler` sidecar and an
ONNX graph are each read here, in full but never beyond a size limit (so an endless device such
as /dev/zero is an error, not unbounded memory). JSON is strict: no NaN or Infinity tokens and
no key twice in one object (Python's json would silently keep the last value). Every problem is
one FrgbError naming the file and what is wrong with it; callers then check the content.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from frgb.errors import FrgbError

#: Largest JSON or text file frgb reads (registry, sidecar, VMAF model, allowlist). The largest
#: real one, a VMAF model file with its support vectors, is about 100 kB.
MAX_TEXT_BYTES = 64 << 20
#: Largest ONNX file frgb reads: protobuf cannot parse a message over 2 GiB.
MAX_ONNX_BYTES = 2 << 30
#: Most bytes read from a source that is not a regular file (a pipe, a device): it has no size
#: to check first, and may never end.
MAX_STREAM_READ = 64 << 20


def size_text(n: int) -> str:
    """A byte count as frgb's messages give it: 64 MiB, 4 GiB."""
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB"


def read_bytes(path: str | Path, what: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of `path`, which should be `what` ("a registry file", ...), or an error naming it:
    missing, a directory, unreadable, or larger than `limit` (checked while reading: a device such
    as /dev/zero has no size)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FrgbError(f"{path}: no such file") from None
    except OSError as e:
        raise FrgbError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise FrgbError(f"{path}: is a directory, not {what}")
    regular = stat.S_ISREG(info.st_mode)
    if regular and info.st_size > limit:
        raise FrgbError(f"{path}: larger than {size_text(limit)}; not {what}")
    limit = limit if regular else min(limit, MAX_STREAM_READ)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise FrgbError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:
        kind = "" if regular else "not a regular file, and "
        raise FrgbError(f"{path}: {kind}larger than {size_text(limit)}; not {what}")
    return data


def read_text(path: str | Path, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """`read_bytes` decoded as UTF-8 (a byte-order mark is skipped), or an error naming the file."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FrgbError(f"{path}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); not {what}") from None


def _refuse_constant(token: str):
    raise ValueError(f"{token} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def strict_json(text: str | bytes):
    """Parse JSON refusing NaN/Infinity tokens and duplicated keys (ValueError, RecursionError)."""
    return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)


def read_json(path: str | Path, what: str, limit: int = MAX_TEXT_BYTES):
    """The strict-JSON content of `path` (see `strict_json`), or an error naming the file."""
    text = read_text(path, what, limit)
    try:
        return strict_json(text)
    except json.JSONDecodeError as e:
        raise FrgbError(f"{path}: not {what} (malformed JSON: {e.msg} at line {e.lineno} column {e.colno})") from None
    except ValueError as e:
        raise FrgbError(f"{path}: not {what} ({e})") from None
    except RecursionError:
        raise FrgbError(f"{path}: not {what} (JSON nested too deeply to read)") from None


def is_finite_number(value) -> bool:
    """A JSON number (not a bool) with a finite value."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return abs(float(value)) < float("inf")
    except OverflowError:  # an integer beyond float range
        return False


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (an existing one, or the same path once resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # realpath, unlike Path.resolve, does not raise on a symbolic link loop
        return os.path.realpath(a) == os.path.realpath(b)
