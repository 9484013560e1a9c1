"""The sweep: encode every (source, encoder, preset, crf), score it, append one row.

Rows are appended one whole line at a time, so an interrupted run leaves only complete rows;
rerunning the same command skips the keys already in the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from frgb.contract import FEATURES
from frgb.corpus.encoders import RECIPES
from frgb.corpus.ffmpeg import check_capabilities, ffmpeg_version, run
from frgb.corpus.grid import Grid
from frgb.corpus.scoring import VMAF_MODEL, aggregates, read_log, vmaf_filter
from frgb.corpus.sources import Reference, render_reference, resolve_source
from frgb.errors import FrgbError
from frgb.outputs import check_output_folder

SCHEMA_VERSION = 3
#: Attempts per encode: libvvenc sometimes writes an empty file and exits 0.
ATTEMPTS = 3
ENC_INTERNAL = (
    "frames", "keyframes", "pkt_bytes_mean", "pkt_bytes_std", "pkt_bytes_min", "pkt_bytes_max",
    "key_bytes_mean", "inter_bytes_mean", "bits_per_pixel", "key_bytes_share",
)


@dataclass(frozen=True)
class Encode:
    ref: Reference
    encoder: str
    preset: str
    crf: float

    @property
    def key(self) -> tuple[str, str, str, float]:
        return (self.ref.sha256, self.encoder, self.preset, self.crf)


@dataclass
class Summary:
    planned: int = 0
    skipped: int = 0
    written: int = 0
    failed: int = 0
    seconds: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)


def row_key(row: dict) -> tuple[str, str, str, float] | None:
    try:
        return (row["src_sha256"], row["encoder"], str(row["preset"]), float(row["crf"]))
    except (KeyError, TypeError, ValueError):
        return None


def prepare_folders(out: Path, work_dir: Path | None, log_dir: Path | None) -> None:
    """Before any encode: OUT is a file or can be made (its folder too), and --work-dir and
    --log-dir are folders frgb can make and write; they are made now."""
    try:
        out.stat()
    except FileNotFoundError:
        pass
    except OSError as e:  # a symbolic link loop, a folder that cannot be searched
        raise FrgbError(f"--out {out}: {e.strerror or e}") from None
    if out.exists() and not out.is_file():
        raise FrgbError(f"{out}: not a regular file; --out must be a JSON Lines corpus file (or a new one)")
    folders = [(out.parent, "--out", f"--out {out}: its folder {out.parent}")]
    folders += [(path, option, None) for path, option in ((work_dir, "--work-dir"), (log_dir, "--log-dir")) if path]
    for folder, option, what in folders:
        check_output_folder(folder, option, what)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FrgbError(f"{what or f'{option} {folder}'}: cannot create it ({e.strerror or e})") from None


def existing_keys(out: Path, retry_failed: bool) -> set:
    """Keys already in `out`; a torn last line (a crash mid-write) is cut off, once every complete
    line is known to be a JSON row (a file that is not a corpus is never truncated)."""
    if not out.exists():
        return set()
    if not out.is_file():
        raise FrgbError(f"{out}: not a regular file; --out must be a JSON Lines corpus file (or a new one)")
    try:
        data = out.read_bytes()
    except OSError as e:
        raise FrgbError(f"{out}: cannot read ({e.strerror or e})") from None
    complete = data[: data.rfind(b"\n") + 1]
    keys = set()
    for n, line in enumerate(complete.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            raise FrgbError(f"{out}:{n}: not a JSON row; fix or move the file before resuming") from None
        if not isinstance(row, dict):
            raise FrgbError(f"{out}:{n}: not a JSON row; fix or move the file before resuming")
        if not (retry_failed and row.get("exit_status", 0) != 0):
            keys.add(row_key(row))
    if len(complete) < len(data):
        with out.open("r+b") as f:
            f.truncate(len(complete))
    return keys


def _packet_stats(ffmpeg: str, path: Path, pixels: int, duration: float) -> dict[str, float | None]:
    """Ten bitstream statistics from the packets of an encode (ffmpeg's framecrc muxer)."""
    done = run(ffmpeg, ["-loglevel", "error", "-i", str(path), "-map", "0:v", "-c", "copy", "-f", "framecrc", "-"])
    sizes, keys = [], []
    for line in done.stdout.decode(errors="replace").splitlines():
        if line.startswith("#"):
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) >= 6:
            sizes.append(int(cols[4]))
            keys.append(not any(c.startswith("F=") for c in cols[6:]))
    if not sizes:
        return {f"enc_internal_{k}": None for k in ENC_INTERNAL}
    mean = sum(sizes) / len(sizes)
    key_sizes = [s for s, k in zip(sizes, keys) if k]
    inter = [s for s, k in zip(sizes, keys) if not k]
    stats = {
        "frames": len(sizes),
        "keyframes": len(key_sizes),
        "pkt_bytes_mean": mean,
        "pkt_bytes_std": (sum((s - mean) ** 2 for s in sizes) / len(sizes)) ** 0.5,
        "pkt_bytes_min": min(sizes),
        "pkt_bytes_max": max(sizes),
        "key_bytes_mean": sum(key_sizes) / len(key_sizes) if key_sizes else None,
        "inter_bytes_mean": sum(inter) / len(inter) if inter else None,
        "bits_per_pixel": 8 * sum(sizes) / (pixels * len(sizes)),
        "key_bytes_share": sum(key_sizes) / sum(sizes) if sum(sizes) else None,
    }
    return {f"enc_internal_{k}": v for k, v in stats.items()}


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def _attempt(ffmpeg: str, job: Encode, folder: Path, log_dir: Path | None) -> dict:
    """One encode + score; returns the measured part of the row or raises _Failed."""
    recipe = RECIPES[job.encoder]
    enc_path = folder / "encode.mp4"
    log_path = folder / "vmaf.json"
    t0 = time.perf_counter()
    args = ["-loglevel", "error", "-y", "-i", str(job.ref.path), "-threads", "1", "-an"]
    done = run(ffmpeg, [*args, *recipe.args(job.preset, job.crf), str(enc_path)])
    encode_ms = (time.perf_counter() - t0) * 1000
    if done.returncode != 0:
        raise _Failed(done.returncode, f"encode failed: {_last_line(done.stderr)}")
    if not enc_path.exists() or enc_path.stat().st_size == 0:
        raise _Failed(1, "encoder wrote an empty file")
    t0 = time.perf_counter()
    lavfi = vmaf_filter(log_path, ten_bit=recipe.pix_fmt != "yuv420p")
    done = run(ffmpeg, ["-loglevel", "error", "-i", str(enc_path), "-i", str(job.ref.path),
                        "-lavfi", lavfi, "-f", "null", "-"])
    score_ms = (time.perf_counter() - t0) * 1000
    if done.returncode != 0 or not log_path.exists():
        raise _Failed(done.returncode or 1, f"libvmaf failed: {_last_line(done.stderr)}")
    log = read_log(log_path)
    if len(log["frames"]) != job.ref.frames:
        raise _Failed(1, f"decoded {len(log['frames'])} of {job.ref.frames} frames")
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(repr(job.key).encode()).hexdigest()[:20]
        shutil.copyfile(log_path, log_dir / f"{name}.json")
    size = enc_path.stat().st_size
    return {
        "encode_size_bytes": size,
        "bitrate_kbps": size * 8 / job.ref.duration_s / 1000,
        "encode_time_ms": encode_ms,
        "score_time_ms": score_ms,
        "vmaf_binary_version": log.get("version"),
        **aggregates(log),
        **_packet_stats(ffmpeg, enc_path, job.ref.width * job.ref.height, job.ref.duration_s),
    }


class _Failed(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def _row_head(job: Encode, context: dict) -> dict:
    """What a row says about its encode before it is measured."""
    ref = job.ref
    recipe = RECIPES[job.encoder]
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": context["run_id"],
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "src": ref.source.name,
        "src_sha256": ref.sha256,
        "width": ref.width,
        "height": ref.height,
        "pix_fmt": "yuv420p",
        "framerate": ref.fps,
        "duration_s": ref.duration_s,
        "encoder": job.encoder,
        "encoder_version": context["encoder_versions"].get(job.encoder),
        "preset": job.preset,
        "crf": job.crf,
        "extra_params": " ".join(recipe.args(job.preset, job.crf)),
        "encode_path": None,
        "vmaf_model": VMAF_MODEL,
        "ffmpeg_version": context["ffmpeg_version"],
        "clip_mode": "full",
        "hdr_transfer": None,
        "hdr_primaries": None,
        "hdr_forced": False,
        "shot_count": 1,
        "shot_avg_duration_sec": ref.duration_s,
        "shot_duration_std_sec": 0.0,
    }


def failed_row(job: Encode, context: dict, status: int, error: str, attempts: int = ATTEMPTS) -> dict:
    """The row of an encode that could not be scored: exit_status != 0, the reason in `error`."""
    empty = {f"{f}_{s}": None for f in FEATURES for s in ("mean", "std")}
    empty.update({f"enc_internal_{k}": None for k in ENC_INTERNAL})
    return {**_row_head(job, context), **empty, "vmaf_score": None, "exit_status": status,
            "error": error, "attempts": attempts}


def encode_and_score(ffmpeg: str, job: Encode, context: dict, work: Path, log_dir: Path | None) -> dict:
    """The schema v3 row of one encode; a failure gives a row with exit_status != 0 and `error`."""
    row = _row_head(job, context)
    folder = Path(tempfile.mkdtemp(dir=work))
    try:
        for attempt in range(ATTEMPTS):
            try:
                measured = _attempt(ffmpeg, job, folder, log_dir)
                return {**row, **measured, "exit_status": 0, "attempts": attempt + 1}
            except _Failed as failure:
                error = failure
        return failed_row(job, context, error.status, str(error))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def plan(grid: Grid, refs: list[Reference], out: Path, retry_failed: bool) -> tuple[list[Encode], int]:
    """The encodes of `grid` over the rendered `refs` whose keys are not yet in `out`, and how
    many encodes the grid has in all."""
    done_keys = existing_keys(out, retry_failed)
    todo = [Encode(ref, e.encoder, preset, crf) for ref in refs for e in grid.encoders for preset, crf in e.points()]
    return [job for job in todo if job.key not in done_keys], len(todo)


def _encoder_version(ffmpeg: str, encoder: str, preset: str, work: Path) -> str | None:
    """The encoder library's version, from a two-frame probe encode's verbose log."""
    recipe = RECIPES[encoder]
    probe = work / f"probe-{encoder}.mp4"
    done = run(ffmpeg, ["-loglevel", "verbose", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25",
                        "-frames:v", "2", *recipe.args(preset, 40), str(probe)])
    stream = probe.read_bytes().decode("latin-1") if probe.exists() else ""
    probe.unlink(missing_ok=True)
    return recipe.version(done.stderr.decode(errors="replace") + stream)


def _append(out: Path, row: dict) -> None:
    line = (json.dumps(row, allow_nan=False) + "\n").encode()
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def build_corpus(
    grid: Grid,
    out: Path,
    ffmpeg: str,
    jobs: int = 1,
    work_dir: Path | None = None,
    log_dir: Path | None = None,
    retry_failed: bool = False,
    on_plan: Callable[[int, int], None] = lambda planned, skipped: None,
    on_row: Callable[[dict], None] = lambda row: None,
) -> Summary:
    """Run the sweep of `grid` into `out` (JSON Lines, appended) and return what happened."""
    if not grid.sources or not grid.encoders:
        raise FrgbError("the grid needs at least one source and one encoder")
    prepare_folders(out, work_dir, log_dir)
    check_capabilities(ffmpeg, [e.encoder for e in grid.encoders])
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="frgb-corpus-", dir=work_dir))
    summary = Summary()
    try:
        refs = []
        for spec in grid.sources:
            ref = render_reference(ffmpeg, resolve_source(spec, grid.duration, work / "src"), grid.duration, work / "refs")
            summary.sources[ref.source.name] = ref.sha256
            refs.append(ref)
        pending, summary.planned = plan(grid, refs, out, retry_failed)
        summary.skipped = summary.planned - len(pending)
        on_plan(len(pending), summary.skipped)
        context = {
            "run_id": uuid.uuid4().hex,
            "ffmpeg_version": ffmpeg_version(ffmpeg),
            "encoder_versions": {
                e.encoder: _encoder_version(ffmpeg, e.encoder, e.presets[-1], work) for e in grid.encoders
            },
        }
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(encode_and_score, ffmpeg, job, context, work, log_dir) for job in pending]
            try:
                for future in as_completed(futures):
                    row = future.result()
                    _append(out, row)
                    summary.written += 1
                    summary.failed += row["exit_status"] != 0
                    on_row(row)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary.seconds = time.perf_counter() - started
    return summary
