"""Speed of frgb's two graphs beside MLPs of the fr_regressor_v2 shape (onnxruntime, CPU).

    python benchmarks/bench_graphs.py [--model-dir model] [--report reports/graphs.md]

For each graph: session creation time, file size, single-row latency with one thread (median
and p99 over many calls) and throughput at batch 1,024 and 65,536. Every graph is measured in
the same process, round after round, so that ratios hold on a noisy machine. Graphs:

- frgb onnxml:  <model-dir>/frgb.onnx (ai.onnx.ml TreeEnsembleRegressor + prior)
- frgb libvmaf: <model-dir>/frgb_libvmaf.onnx, and the same model compiled with each strategy
- trees only:   the same tree settings fitted without the prior (shows what the prior costs)
- MLP (random): inputs 6 + 8, two hidden layers of 16 with GELU, one output (random weights)
- MLP (published): shared/anchors/fr_regressor_v2.onnx, fed its own 14-wide codec block
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from frgb.loading import SHIPPED_CORPUS, load_corpus

REPO = Path(__file__).resolve().parent.parent
ANCHOR = REPO.parent / "shared" / "anchors" / "fr_regressor_v2.onnx"
SINGLE_CALLS = 5000
ROUNDS = 5


def mlp_graph(codec_width: int = 8, hidden: int = 16, seed: int = 0) -> bytes:
    """features (N,6) + codec (N,codec_width) -> 16 GELU -> 16 GELU -> score (N,), opset 17."""
    rng = np.random.default_rng(seed)
    sizes = [6 + codec_width, hidden, hidden, 1]
    inits, nodes, x = [], [helper.make_node("Concat", ["features", "codec"], ["x0"], axis=1)], "x0"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        inits += [numpy_helper.from_array(rng.normal(0, 0.3, (a, b)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(rng.normal(0, 0.1, (b,)).astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"h{i}"]))
        x = f"h{i}"
        if i < len(sizes) - 2:  # GELU(x) = 0.5 x (1 + erf(x / sqrt 2)), as the published MLP writes it
            inits += [numpy_helper.from_array(np.array(2**-0.5, np.float32), f"r{i}"),
                      numpy_helper.from_array(np.array(1.0, np.float32), f"one{i}"),
                      numpy_helper.from_array(np.array(0.5, np.float32), f"half{i}")]
            nodes += [helper.make_node("Mul", [x, f"r{i}"], [f"s{i}"]), helper.make_node("Erf", [f"s{i}"], [f"e{i}"]),
                      helper.make_node("Add", [f"e{i}", f"one{i}"], [f"p{i}"]),
                      helper.make_node("Mul", [x, f"p{i}"], [f"q{i}"]), helper.make_node("Mul", [f"q{i}", f"half{i}"], [f"g{i}"])]
            x = f"g{i}"
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "flat"))
    nodes.append(helper.make_node("Reshape", [x, "flat"], ["score"]))
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 6]),
         helper.make_tensor_value_info("codec", TensorProto.FLOAT, ["N", codec_width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def measure(data: bytes, feeds: dict[int, dict]) -> dict:
    t0 = time.perf_counter()
    sess = session(data)
    created = time.perf_counter() - t0
    one = feeds[1]
    for _ in range(200):
        sess.run(None, one)
    calls = []
    for _ in range(SINGLE_CALLS):
        t0 = time.perf_counter()
        sess.run(None, one)
        calls.append(time.perf_counter() - t0)
    rates = {}
    for n in (1024, 65536):
        t0 = time.perf_counter()
        sess.run(None, feeds[n])
        rates[n] = n / (time.perf_counter() - t0)
    return {"create_ms": created * 1e3, "median_us": statistics.median(calls) * 1e6,
            "p99_us": float(np.percentile(calls, 99)) * 1e6, "rows_s_1024": rates[1024], "rows_s_65536": rates[65536]}


def feeds_for(corpus, codec_width: int) -> dict[int, dict]:
    rng = np.random.default_rng(1)
    out = {}
    for n in (1, 1024, 65536):
        idx = rng.integers(0, len(corpus), n)
        codec = corpus.codec[idx]
        if codec_width != codec.shape[1]:  # the published MLP's 12-slot vocabulary: unknown is slot 11
            wide = np.zeros((n, codec_width))
            wide[:, :5], wide[:, 11], wide[:, 12:] = codec[:, :5], codec[:, 5], codec[:, 6:]
            codec = wide
        out[n] = {"features": corpus.features[idx].astype(np.float32), "codec": codec.astype(np.float32)}
    return out


def graphs(model_dir: Path) -> dict[str, tuple[bytes, int]]:
    """name -> (bytes, codec width)."""
    from frgb.export.graph import Graph, to_onnx
    from frgb.training import FitOptions, fit_model

    found = {"frgb onnxml": ((model_dir / "frgb.onnx").read_bytes(), 8),
             "frgb libvmaf (shipped)": ((model_dir / "frgb_libvmaf.onnx").read_bytes(), 8)}
    corpus = load_corpus(SHIPPED_CORPUS)
    model = fit_model(corpus, FitOptions(), "vmaf_v0.6.1")
    for strategy in ("gemm", "traversal"):
        found[f"frgb libvmaf {strategy}"] = (to_onnx(Graph(model), "libvmaf", strategy).SerializeToString(), 8)
    plain = fit_model(corpus, FitOptions(prior="none"), None)  # same tree settings, no prior: its cost
    for target in ("onnxml", "libvmaf"):
        found[f"trees only, no prior ({target})"] = (to_onnx(Graph(plain), target).SerializeToString(), 8)
    found["MLP 6+8 -> 16 -> 16 -> 1 (random)"] = (mlp_graph(), 8)
    if ANCHOR.is_file():
        found["MLP published fr_regressor_v2 (14-wide codec)"] = (ANCHOR.read_bytes(), 14)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "model")
    parser.add_argument("--report", type=Path, help="Also write the table as Markdown here.")
    args = parser.parse_args()
    corpus = load_corpus(SHIPPED_CORPUS)
    found = graphs(args.model_dir)
    feeds = {w: feeds_for(corpus, w) for w in {w for _, w in found.values()}}
    results = {name: [] for name in found}
    for r in range(ROUNDS):  # interleaved rounds: every graph sees the same machine state
        for name, (data, width) in found.items():
            results[name].append(measure(data, feeds[width]))
        print(f"round {r + 1}/{ROUNDS} done", flush=True)
    keys = ("create_ms", "median_us", "p99_us", "rows_s_1024", "rows_s_65536")
    table = {name: {k: statistics.median(m[k] for m in runs) for k in keys} for name, runs in results.items()}
    base = table["frgb onnxml"]
    header = ["graph", "size KiB", "session ms", "1 row median us", "1 row p99 us", "rows/s @1,024",
              "rows/s @65,536", "latency vs onnxml", "throughput vs onnxml"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name, m in table.items():
        size = len(found[name][0]) / 1024
        lines.append(f"| {name} | {size:.0f} | {m['create_ms']:.1f} | {m['median_us']:.1f} | {m['p99_us']:.1f} | "
                     f"{m['rows_s_1024']:,.0f} | {m['rows_s_65536']:,.0f} | {m['median_us'] / base['median_us']:.2f}x | "
                     f"{m['rows_s_65536'] / base['rows_s_65536']:.2f}x |")
    text = "\n".join(lines)
    print(f"\nonnxruntime {ort.__version__}, one thread, medians of {ROUNDS} interleaved rounds "
          f"({SINGLE_CALLS} single-row calls each)\n")
    print(text)
    if args.report:
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
