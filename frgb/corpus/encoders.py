"""How each encoder is driven from ffmpeg: its quality knob, its preset knob, its input format.

A recipe turns one grid point (preset, crf) into ffmpeg output options. `crf` is the corpus
field name; for libvvenc it carries the QP (the contract says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """ffmpeg options for one encoder."""

    codec: str
    preset_option: str
    quality_options: tuple[str, ...]  # format with {crf}
    pix_fmt: str = "yuv420p"
    extra: tuple[str, ...] = ()
    version_pattern: str = ""  # regex over verbose stderr + the bitstream; group 1 is the version

    def args(self, preset: str, crf: int | float) -> list[str]:
        quality = [part.format(crf=_number(crf)) for part in self.quality_options]
        return ["-pix_fmt", self.pix_fmt, "-c:v", self.codec, self.preset_option, str(preset), *quality, *self.extra]

    def version(self, log: str) -> str | None:
        """The library version in a probe encode's verbose log or bitstream (x264/x265 SEI)."""
        found = re.search(self.version_pattern, log) if self.version_pattern else None
        return found.group(1) if found else None


def _number(x: int | float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


RECIPES: dict[str, Recipe] = {
    "libx264": Recipe("libx264", "-preset", ("-crf", "{crf}"), version_pattern=r"264 - (core \d+)"),
    "libx265": Recipe(
        "libx265", "-preset", ("-crf", "{crf}"), extra=("-x265-params", "log-level=error"),
        version_pattern=r"x265 \(build \d+\) - ([^:\s]+)",
    ),
    "libsvtav1": Recipe(
        "libsvtav1", "-preset", ("-crf", "{crf}"), extra=("-svtav1-params", "lp=1"),
        version_pattern=r"SVT-AV1 Encoder Lib (v\S+)",
    ),
    # libvvenc takes 10-bit input only; its quality knob is QP.
    "libvvenc": Recipe(
        "libvvenc", "-preset", ("-qp", "{crf}"), pix_fmt="yuv420p10le",
        version_pattern=r"libvvenc version: (\S+)",
    ),
    # VP9 and AOM are in constant-quality mode only with a zero target bitrate.
    "libvpx-vp9": Recipe(
        "libvpx-vp9", "-deadline", ("-crf", "{crf}", "-b:v", "0"), extra=("-row-mt", "0"),
        version_pattern=r"\[libvpx-vp9 @ [^\]]+\] (v[\d.]+)",
    ),
    "libaom-av1": Recipe(
        "libaom-av1", "-cpu-used", ("-crf", "{crf}", "-b:v", "0"),
        version_pattern=r"\[libaom-av1 @ [^\]]+\] (v[\d.]+)",
    ),
}
