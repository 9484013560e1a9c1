"""What scoring in slices buys `frgb eval` and `frgb predict`: rows/s and peak memory of
`OnnxModel.run_all` on many rows, in slices of ROWS_PER_CALL against one call on all rows.

    python benchmarks/bench_slices.py [--rows 262144] [--runs 3] [--model-dir model]

The rows repeat the shipped corpus. Each measurement runs in a fresh child process on one
onnxruntime thread; its peak resident set (`VmHWM`) is read after scoring, minus the peak
before it (so loading the corpus is not counted). The table gives medians over the runs,
the two ways interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GRAPHS = ("frgb.onnx", "frgb_libvmaf.onnx", "frgb_libvmaf_interval.onnx")

#: One measurement: argv = graph path, rows, "one" or "sliced"; prints a JSON line.
CHILD = """
import json, sys, time
import numpy as np
import frgb.evaluation as evaluation
from frgb.loading import SHIPPED_CORPUS, load_corpus

def peak_kib():
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))

path, rows, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if how == "one":
    evaluation.ROWS_PER_CALL = rows
corpus = load_corpus(SHIPPED_CORPUS)
model = evaluation.OnnxModel(path, threads=1)
index = np.arange(rows) % len(corpus)
features, codec = corpus.features[index], model.codec(corpus)[index]
before = peak_kib()
started = time.perf_counter()
model.run_all(features, codec)
seconds = time.perf_counter() - started
print(json.dumps({"rows_s": rows / seconds, "peak_mib": (peak_kib() - before) / 1024}))
"""


def measure(path: Path, rows: int, how: str) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(path), str(rows), how], capture_output=True, text=True,
                         check=True)
    return json.loads(run.stdout.splitlines()[-1])


def main() -> None:
    from frgb.evaluation import ROWS_PER_CALL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=262144)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=REPO / "model")
    args = parser.parse_args()
    lines = [f"| graph | rows/s, one call | rows/s, slices of {ROWS_PER_CALL:,} | ratio | peak MiB, one call | "
             "peak MiB, slices | ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
    for graph in GRAPHS:
        path = args.model_dir / graph
        runs = {"one": [], "sliced": []}
        for _ in range(args.runs):
            for how in runs:
                runs[how].append(measure(path, args.rows, how))
        m = {how: {k: statistics.median(r[k] for r in found) for k in ("rows_s", "peak_mib")}
             for how, found in runs.items()}
        one, sliced = m["one"], m["sliced"]
        lines.append(f"| {graph} | {one['rows_s']:,.0f} | {sliced['rows_s']:,.0f} | "
                     f"{sliced['rows_s'] / one['rows_s']:.2f}x | {one['peak_mib']:,.0f} | {sliced['peak_mib']:,.0f} | "
                     f"{sliced['peak_mib'] / one['peak_mib']:.2f}x |")
        print(lines[-1], flush=True)
    print(f"\n{args.rows:,} rows, one onnxruntime thread, medians of {args.runs} runs\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
