"""Where frgb writes: every output path comes from --out, --id or -o and is checked before any work.

The rules: a model id is a plain, visible file stem, so every file of a fit lands inside --out;
no file a command writes is another file the same command writes (the registry above all) or a
file it reads (the corpus, a model and its sidecar); an output folder is a folder and can be
written; an output file's folder exists. Each broken rule is a one-line FrgbError.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from frgb.artifacts import REGISTRY, registry_document
from frgb.contract import Layout
from frgb.errors import FrgbError
from frgb.files import same_file
from frgb.registry import check_id
from frgb.targets import Inputs, Target

#: Longest file name (bytes) that common file systems accept.
NAME_MAX = 255
#: What frgb adds to a file name while writing it (".<name>.<8 hex>.previous.tmp").
_TEMPORARY = len("..12345678.previous.tmp")


def check_model_id(name: str) -> str:
    """`name` if it can be the stem of a model's files inside --out, else an error saying why."""
    if not name:
        raise FrgbError("--id is empty: give a file stem, e.g. --id frgb")
    if "/" in name or "\\" in name:
        raise FrgbError(f"--id {name!r} is not a plain file name (no / or \\): a model's files are written "
                        "inside --out")
    if name.startswith("."):
        raise FrgbError(f"--id {name!r} starts with a dot: its files would be hidden (and '..' is outside --out)")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise FrgbError(f"--id {name!r} holds a control character")
    return name


def fit_file_stems(name: str, layout: Layout, targets: list[Target], kinds: list[Inputs], intervals: bool) -> list[str]:
    """The stem of every model a fit writes: each target's point file for each input kind, then the
    interval files."""
    return [layout.file_stem(name, target, kind, interval) for interval in [False] + [True] * intervals
            for target in targets for kind in kinds]


def fit_outputs(out: Path, name: str, layout: Layout, targets: list[Target], kinds: list[Inputs], intervals: bool,
                inputs: dict[str, Path | None]) -> list[Path]:
    """Every file `frgb fit` writes into `out` (each model's .onnx and sidecar, then registry.json),
    after checking them and the folder: the id is a plain stem, no sidecar is the registry, every
    name fits the file system and the registry's id pattern, no output is one of `inputs` (label -> path read by the fit), the
    folder can be made and written, and an existing registry there is readable. `inputs` maps
    what each input is ("the corpus") to its path."""
    check_model_id(name)
    out = Path(out)
    stems = fit_file_stems(name, layout, targets, kinds, intervals)
    names = [f"{stem}{ext}" for stem in stems for ext in (".onnx", ".json")]
    if REGISTRY in names:
        raise FrgbError(f"--id {name!r}: its sidecar would be {out / REGISTRY}, the registry that lists every "
                        "model in the folder; choose another id")
    longest = max(names, key=lambda n: len(n.encode()))
    if len(longest.encode()) + _TEMPORARY > NAME_MAX:
        raise FrgbError(f"--id {name!r} is too long: {longest} with frgb's temporary suffix is over {NAME_MAX} bytes")
    for stem in stems:
        check_id(stem)
    check_output_folder(out, "--out")
    paths = [out / n for n in names] + [out / REGISTRY]
    for path in paths:
        if path.exists() and not path.is_file():
            raise FrgbError(f"{path}: exists and is not a file; frgb fit would replace it")
    check_not_inputs(paths, inputs)
    registry_document(out / REGISTRY)  # a damaged registry is an error now, not after the fit
    return paths


def check_output_folder(out: Path, option: str, what: str | None = None) -> None:
    """`out` is a folder, or can be made as one, and can be written; errors start with `what`
    [default: "OPTION OUT"]."""
    out = Path(out)
    what = what or f"{option} {out}"
    if out.exists() and not out.is_dir():
        raise FrgbError(f"{what}: exists and is not a folder")
    if out.is_symlink() and not out.exists():
        raise FrgbError(f"{what}: a symbolic link to nothing (its target is missing, or the links form a loop)")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FrgbError(f"{what}: {existing} is not a folder")
    _check_writable(existing, what)


def _check_writable(folder: Path, what: str) -> None:
    """A file can be made in `folder`: tried with a temporary file, removed at once, because
    permission bits say nothing for root, a read-only mount or a file system such as /proc."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".frgb-probe.", suffix=".tmp")
    except OSError as e:
        raise FrgbError(f"{what}: cannot create files in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: Path, option: str, inputs: dict[str, Path | None]) -> None:
    """A file a command will write: not a folder, in a folder that exists, not one of `inputs`."""
    path = Path(path)
    if path.is_dir():
        raise FrgbError(f"{option} {path}: is a folder, not a file")
    if path.exists() and not path.is_file():
        raise FrgbError(f"{option} {path}: is not a regular file (a device or a pipe); frgb writes a new file and "
                        "renames it into place, which would replace it: give a file path")
    if not path.parent.is_dir():
        raise FrgbError(f"{option} {path}: the folder {path.parent} does not exist")
    _check_writable(path.parent, f"{option} {path}")
    check_not_inputs([path], inputs)


def model_files(model: Path) -> dict[str, Path]:
    """A model's own files: the graph, its sidecar and the registry beside them."""
    model = Path(model)
    return {"the model": model, "the model's sidecar": model.with_suffix(".json"),
            "the registry beside the model": model.parent / REGISTRY}


def check_not_inputs(outputs: list[Path], inputs: dict[str, Path | None]) -> None:
    """No output path names one of `inputs` (what the file is, e.g. "the corpus" -> its path)."""
    for path in outputs:
        for what, given in inputs.items():
            if given is not None and same_file(path, given):
                raise FrgbError(f"{path}: is {what}; writing it would destroy it")
