"""Speed and memory of frgb's graphs beside the fr_regressor_v2 checkpoint they replace (onnxruntime, CPU).

    python benchmarks/bench_graphs.py [--model-dir model] [--rounds 5] [--strategies] [--before DIR] [--limits]
                                      [--report FILE]

Every graph runs in one process on one onnxruntime thread (intra- and inter-op), round after
round, so that the ratios hold on a shared machine; the table gives medians over the rounds.
Per graph: file size, session creation time, single-row latency (median and p99 of many
calls), rows/s at batch 1 (one over the median single-row latency), 1,024 and 65,536 (median
call of each round), and the peak resident memory of scoring 65,536 rows: a child process per
graph loads the inputs, creates the session and runs the batch once; the figure is its peak
resident set (`VmHWM` in /proc/self/status: unlike `ru_maxrss`, it does not inherit the
parent's peak across fork and exec) minus that of a child that loads the same inputs and
imports onnxruntime but creates no session (minimum of three children each). Graphs:

- frgb onnxml, frgb libvmaf: <model-dir>/frgb.onnx and frgb_libvmaf.onnx (and the interval
  graphs if present);
- fr_regressor_v2: ../shared/anchors/fr_regressor_v2.onnx (the published MLP; fed its own
  14-wide codec block), the reference of every ratio;
- bare call: features + codec -> ReduceSum -> score, onnxruntime's per-call overhead from Python;
- with --strategies: the shipped model refitted and compiled with each libvmaf tree strategy;
- with --before DIR: the same graphs from another model directory (e.g. an older model/), so
  that old and new are measured in the same run;
- with --limits: what bounds the goals. The teacher prior's subgraph alone, as shipped (float64)
  and as a float32 build (which misses the parity tolerance, tests/test_export.py): the most any
  graph that carries the prior can reach. And the bare call inside a one-iteration Loop and
  behind an If on the batch size (Shape, Div, Cast, If; both allowlisted): the least that
  scoring in chunks, the way to bound memory, adds to a single-row call.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from frgb.loading import SHIPPED_CORPUS, load_corpus

REPO = Path(__file__).resolve().parent.parent
ANCHOR = REPO.parent / "shared" / "anchors" / "fr_regressor_v2.onnx"
REFERENCE = "fr_regressor_v2 (checkpoint)"
SINGLE_CALLS = 5000
BATCHES = {1024: 50, 65536: 3}  # batch size -> calls per round
BIG = max(BATCHES)
RSS_CHILD = r"""
import sys
import numpy as np
import onnxruntime as ort
feeds = {name: np.load(path) for name, path in (("features", sys.argv[2]), ("codec", sys.argv[3]))}
if sys.argv[1] != "-":
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
    session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def _inputs() -> list:
    return [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 6]),
            helper.make_tensor_value_info("codec", TensorProto.FLOAT, ["N", 8])]


def _model(nodes: list, name: str, initializers: list) -> bytes:
    graph = helper.make_graph(nodes, name, _inputs(), [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _sum_features(output: str) -> list:
    return [helper.make_node("ReduceSum", ["features", "axes"], [output], keepdims=0)]


AXES = helper.make_tensor("axes", TensorProto.INT64, [1], [1])


def bare_graph() -> bytes:
    """features (N,6) + codec (N,8) -> ReduceSum over features -> score (N,): the overhead floor."""
    return _model(_sum_features("score"), "bare", [AXES])


def loop_graph() -> bytes:
    """The bare call as the body of a Loop of one iteration (its scan output (1, N), reshaped)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"])] + _sum_features("part"), "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("part", TensorProto.FLOAT, ["N"])])
    nodes = [helper.make_node("Loop", ["trips", "true"], ["parts"], body=body),
             helper.make_node("Reshape", ["parts", "flat"], ["score"])]
    return _model(nodes, "loop", [AXES, helper.make_tensor("trips", TensorProto.INT64, [], [1]),
                                  helper.make_tensor("true", TensorProto.BOOL, [], [True]),
                                  helper.make_tensor("flat", TensorProto.INT64, [1], [-1])])


def if_graph() -> bytes:
    """The bare call behind an If on the batch size (N >= 4,096, without comparison ops)."""
    branch = [helper.make_graph(_sum_features(name), name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N"])])
              for name in ("large", "small")]
    nodes = [helper.make_node("Shape", ["features"], ["n"], start=0, end=1), helper.make_node("Div", ["n", "chunk"], ["chunks"]),
             helper.make_node("Cast", ["chunks"], ["big"], to=TensorProto.BOOL),
             helper.make_node("If", ["big"], ["score"], then_branch=branch[0], else_branch=branch[1])]
    return _model(nodes, "if", [AXES, helper.make_tensor("chunk", TensorProto.INT64, [1], [4096])])


def prior_graph(dtype) -> bytes:
    """The teacher prior's subgraph alone, as every frgb graph carries it (features -> (N, 1))."""
    from skl2onnx.common.data_types import FloatTensorType

    from frgb.export.teacher_onnx import teacher_graph
    from frgb.teacher import VmafTeacher

    node = teacher_graph(VmafTeacher().fit(), "features", 17, output_names=["score"], dtype=dtype)
    return node.to_onnx(inputs=[("features", FloatTensorType([None, 6]))], target_opset=17).SerializeToString()


def session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def measure(data: bytes, feeds: dict[int, dict]) -> dict:
    t0 = time.perf_counter()
    sess = session(data)
    created = time.perf_counter() - t0
    names = [i.name for i in sess.get_inputs()]  # the prior alone reads only features
    feeds = {n: {k: batch[k] for k in names} for n, batch in feeds.items()}
    one = feeds[1]
    for _ in range(200):
        sess.run(None, one)
    calls = []
    for _ in range(SINGLE_CALLS):
        t0 = time.perf_counter()
        sess.run(None, one)
        calls.append(time.perf_counter() - t0)
    result = {"create_ms": created * 1e3, "median_us": statistics.median(calls) * 1e6,
              "p99_us": float(np.percentile(calls, 99)) * 1e6}
    result["rows_s_1"] = 1e6 / result["median_us"]
    for n, repeat in BATCHES.items():
        sess.run(None, feeds[n])
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            sess.run(None, feeds[n])
            times.append(time.perf_counter() - t0)
        result[f"rows_s_{n}"] = n / statistics.median(times)
    return result


def feeds_for(corpus, codec_width: int) -> dict[int, dict]:
    """Rows drawn from the shipped corpus; for the 14-wide checkpoint, its 12-slot vocabulary
    (unknown is slot 11) with the same encoders."""
    rng = np.random.default_rng(1)
    out = {}
    for n in (1, *BATCHES):
        idx = rng.integers(0, len(corpus), n)
        codec = corpus.codec[idx]
        if codec_width != codec.shape[1]:
            wide = np.zeros((n, codec_width))
            wide[:, :5], wide[:, 11], wide[:, 12:] = codec[:, :5], codec[:, 5], codec[:, 6:]
            codec = wide
        out[n] = {"features": corpus.features[idx].astype(np.float32), "codec": codec.astype(np.float32)}
    return out


def peak_rss_mib(found: dict[str, tuple[bytes, int]], feeds: dict[int, dict[int, dict]]) -> dict[str, float]:
    """Peak RSS of scoring a BIG batch, per graph, over a child that creates no session (MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = {}
        for width in {w for _, w in found.values()}:
            inputs[width] = [tmp / f"{name}{width}.npy" for name in ("features", "codec")]
            for path, name in zip(inputs[width], ("features", "codec")):
                np.save(path, feeds[width][BIG][name])

        def child(model: str, width: int) -> int:
            run = subprocess.run([sys.executable, "-c", RSS_CHILD, model, *map(str, inputs[width])],
                                 capture_output=True, text=True, check=True)
            return int(run.stdout.split()[-1])

        base = {w: min(child("-", w) for _ in range(3)) for w in inputs}
        out = {}
        for i, (name, (data, width)) in enumerate(found.items()):
            path = tmp / f"graph{i}.onnx"
            path.write_bytes(data)
            out[name] = (min(child(str(path), width) for _ in range(3)) - base[width]) / 1024
        return out


def graphs(model_dir: Path, strategies: bool, before: Path | None, limits: bool) -> dict[str, tuple[bytes, int]]:
    """name -> (bytes, codec width)."""
    found = {"bare call (overhead floor)": (bare_graph(), 8)}
    if ANCHOR.is_file():
        found[REFERENCE] = (ANCHOR.read_bytes(), 14)
    for directory, suffix in ((model_dir, ""), (before, f" ({before.name if before else ''})")):
        for name, file in (("frgb onnxml", "frgb.onnx"), ("frgb libvmaf", "frgb_libvmaf.onnx"),
                           ("frgb onnxml interval", "frgb_interval.onnx"),
                           ("frgb libvmaf interval", "frgb_libvmaf_interval.onnx")):
            if directory is not None and (directory / file).is_file():
                found[name + suffix] = ((directory / file).read_bytes(), 8)
    if strategies:
        from frgb.export.graph import Graph, to_onnx
        from frgb.training import FitOptions, fit_model

        model = fit_model(load_corpus(SHIPPED_CORPUS), FitOptions(), "vmaf_v0.6.1")
        for strategy in ("table", "gemm", "traversal"):
            proto = to_onnx(Graph(model), "libvmaf", strategy)
            found[f"frgb libvmaf, {strategy} trees"] = (proto.SerializeToString(), 8)
    if limits:
        found["limit: the prior alone, float64 (shipped)"] = (prior_graph(np.float64), 8)
        found["limit: the prior alone, float32 (misses parity)"] = (prior_graph(np.float32), 8)
        found["limit: bare call in a Loop"] = (loop_graph(), 8)
        found["limit: bare call behind an If"] = (if_graph(), 8)
    return found


def table(found: dict, measured: dict, rss: dict) -> str:
    ref = measured.get(REFERENCE)
    header = ["graph", "size KiB", "session ms", "1 row median us", "1 row p99 us", "rows/s @1", "rows/s @1,024",
              "rows/s @65,536", "peak RSS MiB @65,536", "latency vs checkpoint", "rows/s @65,536 vs checkpoint",
              "RSS vs checkpoint"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name, m in measured.items():
        ratios = ["", "", ""]
        if ref:
            ratios = [f"{m['median_us'] / ref['median_us']:.2f}x", f"{m['rows_s_65536'] / ref['rows_s_65536']:.2f}x",
                      f"{rss[name] / rss[REFERENCE]:.2f}x"]
        lines.append(f"| {name} | {len(found[name][0]) / 1024:.0f} | {m['create_ms']:.1f} | {m['median_us']:.1f} | "
                     f"{m['p99_us']:.1f} | {m['rows_s_1']:,.0f} | {m['rows_s_1024']:,.0f} | {m['rows_s_65536']:,.0f} | "
                     f"{rss[name]:.1f} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "model")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strategies", action="store_true", help="Also compile the model with each libvmaf strategy.")
    parser.add_argument("--before", type=Path, help="Also measure the graphs of this model directory.")
    parser.add_argument("--limits", action="store_true", help="Also measure what bounds the goals (see above).")
    parser.add_argument("--report", type=Path, help="Also write the table as Markdown here.")
    args = parser.parse_args()
    corpus = load_corpus(SHIPPED_CORPUS)
    found = graphs(args.model_dir, args.strategies, args.before, args.limits)
    feeds = {w: feeds_for(corpus, w) for w in {w for _, w in found.values()}}
    results = {name: [] for name in found}
    for r in range(args.rounds):  # interleaved rounds: every graph sees the same machine state
        for name, (data, width) in found.items():
            results[name].append(measure(data, feeds[width]))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    keys = results[next(iter(results))][0].keys()
    measured = {name: {k: statistics.median(m[k] for m in runs) for k in keys} for name, runs in results.items()}
    rss = peak_rss_mib(found, feeds)
    text = table(found, measured, rss)
    print(f"\nonnxruntime {ort.__version__}, one thread, medians of {args.rounds} interleaved rounds "
          f"({SINGLE_CALLS} single-row calls each)\n")
    print(text)
    if args.report:
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
