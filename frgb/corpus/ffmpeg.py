"""Finding an ffmpeg with libvmaf and checking what it can do."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from frgb.errors import FrgbError


def find_ffmpeg(path: str | Path | None = None) -> str:
    """The ffmpeg to use: `path`, else the one in `imageio-ffmpeg`, else the one on PATH."""
    if path is not None:
        exe = shutil.which(str(path)) or (str(path) if Path(path).is_file() else None)
        if exe is None:
            raise FrgbError(f"ffmpeg not found at {path}")
        return exe
    try:
        import imageio_ffmpeg
    except ImportError:
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise FrgbError(
                "no ffmpeg: install the corpus extra (pip install 'frgb[corpus]') or pass --ffmpeg PATH"
            ) from None
        return exe
    return imageio_ffmpeg.get_ffmpeg_exe()


def run(ffmpeg: str, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ffmpeg quietly (errors only on stderr) and return the finished process."""
    return subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@functools.lru_cache(maxsize=8)
def _listing(ffmpeg: str, what: str) -> str:
    return run(ffmpeg, [f"-{what}"]).stdout.decode(errors="replace")


def ffmpeg_version(ffmpeg: str) -> str:
    """The version word of `ffmpeg -version` (for example `n9.0.2-17-g2a571b6068-20260930`)."""
    first = _listing(ffmpeg, "version").splitlines()[:1]
    words = first[0].split() if first else []
    return words[2] if len(words) > 2 else "unknown"


def check_capabilities(ffmpeg: str, encoders: list[str]) -> None:
    """Fail with one clear message naming what this ffmpeg lacks (libvmaf or an encoder)."""
    filters = {line.split()[1] for line in _listing(ffmpeg, "filters").splitlines()[1:] if len(line.split()) > 2}
    encs = {line.split()[1] for line in _listing(ffmpeg, "encoders").splitlines() if len(line.split()) > 2}
    missing = (["the libvmaf filter"] if "libvmaf" not in filters else []) + [
        f"the {e} encoder" for e in encoders if e not in encs
    ]
    if missing:
        raise FrgbError(f"{ffmpeg} lacks {', '.join(missing)}; pass --ffmpeg PATH to a build that has them")
