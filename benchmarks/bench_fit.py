"""Fit time and peak memory of frgb and of the MLP baseline as the corpus grows.

    python benchmarks/bench_fit.py [--corpus data/corpus.jsonl] [--sizes shipped,100000,1000000]
                                   [--runs 3] [--big-runs 1] [--cli] [--out reports/bench_fit.txt]

Corpora of 10^5 and 10^6 rows are made by resampling the shipped rows with small jitter
(features x (1 + 0.2 % noise), score + 0.05 VMAF noise; codec block and source kept). Every
measurement runs in a fresh child process, so the peak resident memory (ru_maxrss of that child
alone, via os.wait4) is per run and includes the interpreter, the libraries and the data (for
the fit rows: the arrays, not the JSONL reading):

    frgb   frgb.training.fit_model: what `frgb fit` fits (prior + trees, codec-blind copies)
    mlp    frgb.baseline.MlpBaseline on the same rows (codec-blind copies included)
    cli    with --cli: `frgb fit --no-cv` end to end (load JSONL, fit, export both targets with
           their parity checks)
    cv     with --cli: `frgb fit` as it runs by default, with its leave-one-source-out
           cross-validation (one more fit per source)

The median of --runs runs is printed (--big-runs for corpora of 10^6 rows and more). Each
child may use at most --memory-limit GiB of address space (a run that needs more fails with
"out of memory" instead of starving the machine) and --timeout seconds (then "over N s").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FEATURE_JITTER = 0.002  # relative
SCORE_JITTER = 0.05  # VMAF


def resampled(corpus, n: int, seed: int = 0):
    """A corpus of `n` rows drawn with replacement from `corpus`, with small jitter."""
    from frgb.contract import FEATURES

    rng = np.random.default_rng(seed)
    take = rng.integers(0, len(corpus), n)
    out = corpus.subset(take)
    out.features = np.maximum(out.features * (1 + FEATURE_JITTER * rng.standard_normal((n, len(FEATURES)))), 0)
    out.target = np.clip(out.target + SCORE_JITTER * rng.standard_normal(n), 0, 100)
    out.line = np.arange(1, n + 1)
    return out


def save_arrays(corpus, path: Path) -> None:
    np.savez(path, features=corpus.features, codec=corpus.codec, target=corpus.target, group=corpus.group,
             vmaf_model=corpus.vmaf_model)


def write_jsonl(corpus, path: Path) -> None:
    """The rows as a schema v3 corpus that `frgb fit` reads (only the keys it needs)."""
    import polars as pl

    from frgb.contract import FEATURES

    frame = pl.DataFrame({
        "schema_version": 3, "src": corpus.source, "src_sha256": corpus.group, "encoder": corpus.encoder,
        "preset": [None if p is None else str(p) for p in corpus.preset], "crf": corpus.crf,
        "vmaf_score": corpus.target, "vmaf_model": corpus.vmaf_model, "exit_status": 0,
        **{f"{f}_mean": corpus.features[:, i] for i, f in enumerate(FEATURES)},
    })
    frame.write_ndjson(path)


def child(kind: str, data: Path) -> None:
    """Runs in the child process: load the arrays, fit, print the fit seconds as JSON."""
    from frgb.baseline import MlpBaseline
    from frgb.loading import Corpus
    from frgb.loading import design_matrix
    from frgb.training import FitOptions, choose_prior, fit_model

    arrays = np.load(data)
    n = len(arrays["target"])
    empty = np.full(n, "", dtype=object)
    corpus = Corpus(str(data), "", arrays["features"], arrays["codec"], arrays["target"], arrays["group"],
                    arrays["group"], empty, empty, np.zeros(n), arrays["vmaf_model"], np.arange(n))
    options = FitOptions()
    started = time.perf_counter()
    if kind == "frgb":
        fit_model(corpus, options, choose_prior(corpus, options.prior).model)
    else:
        model = MlpBaseline(codec_blind=options.codec_blind, seed=options.seed)
        model.fit(design_matrix(corpus), corpus.target)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def run_kind(kind: str, rows_label: str, argv: list[str], runs: int, limit: float, timeout: float) -> dict:
    results = []
    for _ in range(runs):
        r = measure_reaped(argv, limit, timeout)
        results.append(r)
        if not r["ok"]:
            break
    ok = [r for r in results if r["ok"]]
    if not ok:
        return {"kind": kind, "rows": rows_label, "error": results[-1]["error"], "peak_mib": results[-1]["peak_mib"]}
    return {"kind": kind, "rows": rows_label, "runs": len(ok),
            "seconds": statistics.median(r["seconds"] for r in ok),
            "wall": statistics.median(r["wall"] for r in ok),
            "peak_mib": statistics.median(r["peak_mib"] for r in ok)}


def measure_reaped(argv: list[str], limit_gib: float, timeout: float) -> dict:
    """Run argv in a forked child capped at `limit_gib` of address space and killed after `timeout`
    seconds; reap it with os.wait4 so that its own peak RSS is known."""
    def cap():
        limit = int(limit_gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # child: the measured program
            try:
                cap()
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.chdir(REPO)
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() - started > timeout:
                os.kill(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
                return {"ok": False, "error": f"over {timeout:.0f} s", "wall": timeout, "peak_mib": usage.ru_maxrss / 1024}
            time.sleep(0.2)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    peak = usage.ru_maxrss / 1024  # KiB -> MiB
    if os.waitstatus_to_exitcode(status) != 0:
        oom = "MemoryError" in stderr or "bad_alloc" in stderr or os.WIFSIGNALED(status)
        last = (stderr.strip().splitlines() or ["failed"])[-1]
        return {"ok": False, "error": "out of memory" if oom else last[:120], "wall": wall, "peak_mib": peak}
    seconds = wall
    for line in stdout.splitlines()[::-1]:
        if line.startswith("{"):
            seconds = json.loads(line).get("seconds", wall)
            break
    return {"ok": True, "seconds": seconds, "wall": wall, "peak_mib": peak}


def table(results: list[dict], sizes: list[tuple[str, int]], kinds: list[str]) -> str:
    by = {(r["rows"], r["kind"]): r for r in results}

    def cell(r, key):
        if r is None:
            return "-"
        if "error" in r:
            return r["error"] if key == "seconds" else (f"{r['peak_mib']:.0f}" if r.get("peak_mib") else "-")
        if key != "seconds":
            return f"{r[key]:.0f}"
        return f"{r[key]:.2f}" if r[key] < 10 else f"{r[key]:.1f}"

    labels = {"frgb": ("frgb fit s", "frgb peak MiB"), "mlp": ("MLP fit s", "MLP peak MiB"),
              "cli": ("`frgb fit --no-cv` s", "`frgb fit --no-cv` peak MiB"),
              "cv": ("`frgb fit` s", "`frgb fit` peak MiB")}
    header = ["rows"] + [h for k in kinds for h in labels[k]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for label, n in sizes:
        row = [f"{n:,}" + (" (shipped)" if label == "shipped" else "")]
        for k in kinds:
            r = by.get((label, k))
            row += [cell(r, "seconds"), cell(r, "peak_mib")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus.jsonl")
    parser.add_argument("--sizes", default="shipped,100000,1000000")
    parser.add_argument("--kinds", default="frgb,mlp", help="comma-separated: frgb, mlp")
    parser.add_argument("--cli", action="store_true", help="also time `frgb fit --no-cv` and `frgb fit` end to end")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-runs", type=int, default=1, help="runs for corpora of 10^6 rows or more")
    parser.add_argument("--memory-limit", type=float, default=12.0, help="GiB of address space per child")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is stopped")
    parser.add_argument("--out", type=Path, help="also write the table (with the command) to this file")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]))

    from frgb.loading import load_corpus

    base = load_corpus(args.corpus)
    kinds = [k for k in args.kinds.split(",") if k]
    sizes = [("shipped", len(base)) if s == "shipped" else (s, int(float(s))) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="frgb-bench-") as tmp:
        for label, n in sizes:
            corpus = base if label == "shipped" else resampled(base, n)
            data = Path(tmp) / f"{label}.npz"
            save_arrays(corpus, data)
            runs = args.big_runs if n >= 1_000_000 else args.runs
            for kind in kinds:
                r = run_kind(kind, label, [sys.executable, __file__, "--child", kind, str(data)], runs,
                             args.memory_limit, args.timeout)
                results.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
            if args.cli:
                jsonl = Path(tmp) / f"{label}.jsonl"
                write_jsonl(corpus, jsonl)
                frgb = str(Path(sys.executable).with_name("frgb"))
                for kind, extra in (("cli", ["--no-cv"]), ("cv", [])):
                    r = run_kind(kind, label, [frgb, "fit", "--corpus", str(jsonl), "--out", str(Path(tmp) / "out"),
                                               *extra], runs, args.memory_limit, args.timeout)
                    r["seconds"] = r.get("wall", r.get("seconds"))
                    results.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
                jsonl.unlink()
            data.unlink()
    text = table(results, sizes, kinds + (["cli", "cv"] if args.cli else []))
    command = "python benchmarks/bench_fit.py " + " ".join(sys.argv[1:])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        note = (f"`{command.strip()}` on {os.cpu_count()} cores; median of {args.runs} runs "
                f"({args.big_runs} for 10^6 rows); seconds of the fit alone for frgb and MLP, wall seconds of the "
                "whole command for `frgb fit --no-cv` and `frgb fit` (load the JSONL, fit, cross-validate by source "
                "unless --no-cv, export both targets with their parity checks); peak = the child process's "
                "maximum resident set.")
        args.out.write_text(note + "\n\n" + text + "\n")


if __name__ == "__main__":
    main()
