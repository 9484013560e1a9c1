"""Scoring an encode against its reference with libvmaf, and reading libvmaf's JSON log."""

from __future__ import annotations

import json
import math
from pathlib import Path

from frgb.contract import DEFAULT_PRIOR, FEATURES

#: libvmaf's per-frame key for each contract feature (older logs drop the prefix).
LOG_KEYS = {name: f"integer_{name}" for name in FEATURES}
#: The model libvmaf scores with (its default), recorded in every row.
VMAF_MODEL = DEFAULT_PRIOR


def vmaf_filter(log_path: Path, ten_bit: bool) -> str:
    """The filter graph that scores input 0 (the encode) against input 1 (the reference)."""
    # Dither-free conversion of 10-bit decodes: ffmpeg's default dither shifts VVC scores.
    to_8bit = "scale=sws_dither=none," if ten_bit else ""
    log = str(log_path).replace("\\", "/").replace(":", "\\:")
    return (
        f"[0:v]{to_8bit}format=yuv420p,setpts=PTS-STARTPTS[dist];"
        f"[1:v]setpts=PTS-STARTPTS[ref];"
        f"[dist][ref]libvmaf=log_fmt=json:log_path={log}:n_threads=1"
    )


def per_frame(log: dict) -> dict[str, list[float]]:
    """Per-frame contract features and `vmaf` from a libvmaf JSON log (prefix or not)."""
    frames = [f["metrics"] for f in log["frames"]]
    out = {}
    for name in (*FEATURES, "vmaf"):
        key = LOG_KEYS.get(name, name)
        out[name] = [float(m.get(key, m.get(name, math.nan))) for m in frames]
    return out


def aggregates(log: dict) -> dict[str, float]:
    """`<feature>_mean`, `<feature>_std` (population) and `vmaf_score` of one log."""
    values = per_frame(log)
    row = {}
    for name in FEATURES:
        xs = values[name]
        mean = sum(xs) / len(xs)
        row[f"{name}_mean"] = mean
        row[f"{name}_std"] = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    row["vmaf_score"] = sum(values["vmaf"]) / len(values["vmaf"])
    return row


def read_log(path: Path) -> dict:
    return json.loads(Path(path).read_text())
