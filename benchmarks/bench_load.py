"""Load a large generated corpus and report load time and peak memory (not part of the test run).

    python benchmarks/bench_load.py                 # 2 GB, 3 loads
    python benchmarks/bench_load.py --gb 0.2 --runs 1

The corpus is generated in a temporary folder (removed at the end) by repeating the complete
rows of the shipped data/corpus.jsonl. Each repetition gets its own source name and hash, so
the rows stay distinct: the loader keeps, encodes and sorts all of them rather than dropping
copies as duplicates. Each load runs in a fresh child process; its peak resident memory is
read from that child's rusage (os.wait4), so the generator's memory is not counted.
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
from pathlib import Path

from frgb.loading import SHIPPED_CORPUS

#: What each child process does: load the corpus and print one JSON line about it.
CHILD = """
import json, sys, time
from frgb.loading import load_corpus
started = time.perf_counter()
corpus = load_corpus(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(corpus), "dropped": corpus.dropped}))
"""


def shipped_block() -> bytes:
    """The complete lines of the shipped corpus (it may be growing: a torn last line is cut)."""
    data = SHIPPED_CORPUS.read_bytes()
    return data[: data.rfind(b"\n") + 1]


def generate(path: Path, size: int) -> tuple[int, int]:
    """Write at least `size` bytes of distinct rows to `path`; returns (bytes, lines)."""
    block = shipped_block()
    written = lines = rep = 0
    with path.open("wb") as f:
        while written < size:
            copy = block.replace(b'"src": "', b'"src": "r%d/' % rep).replace(b'"src_sha256": "', b'"src_sha256": "r%d-' % rep)
            f.write(copy)
            written += len(copy)
            lines += copy.count(b"\n")
            rep += 1
    return written, lines


def load_once(path: Path) -> tuple[dict, int]:
    """(what the child printed, its peak RSS in bytes)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"load failed with exit code {child.returncode}")
    return json.loads(out), usage.ru_maxrss * 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="corpus size in GB (10^9 bytes) [2]")
    parser.add_argument("--runs", type=int, default=3, help="loads to time; the median is reported [3]")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the generated file [system temp]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frgb-bench-", dir=args.tmp) as tmp:
        path = Path(tmp) / "corpus.jsonl"
        started = time.perf_counter()
        size, lines = generate(path, int(args.gb * 1e9))
        print(f"generated {size / 1e9:.2f} GB, {lines:,} rows in {time.perf_counter() - started:.0f} s ({path})")
        results = []
        for run in range(args.runs):
            info, peak = load_once(path)
            results.append((info["seconds"], peak))
            print(f"run {run + 1}: {info['seconds']:.1f} s, peak RSS {peak / 2**30:.2f} GiB, "
                  f"{info['rows']:,} rows kept, dropped {info['dropped'] or 'none'}")
    seconds = statistics.median(s for s, _ in results)
    peak = max(p for _, p in results)
    print(f"median load time {seconds:.1f} s over {args.runs} runs; peak RSS {peak / 2**30:.2f} GiB "
          f"({size / seconds / 1e6:.0f} MB/s)")


if __name__ == "__main__":
    main()
