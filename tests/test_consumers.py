"""Every graph called the way each consumer that exists calls it (shared/CONSUMERS.md):

- the fork's `vmaf-tune fast` proxy (proxy.py run_proxy): features then its 14-wide codec block
  concatenated into one (1, 20) tensor, fed as the graph's first input, one row per call,
  `outputs[0].reshape(-1)[0]`;
- the successor's Python proxy: inputs by name, a 14-wide block (`assert block.shape == (14,)`);
- libvmaf's generic DNN API: inputs bound by position;
- the successor's Go port: one input only (features and codec concatenated), vocabulary and
  scaler read from the sidecar, always normalising;
- a libvmaf build that runs the model per frame: batch 1, the codec block zero-filled with
  slot w - 3 (`unknown`) set, every output bound.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from frgb.check import check_model
from frgb.contract import FORK_V2, HARDWARE_ENCODERS, N_FEATURES
from frgb.export.package import export, export_intervals
from frgb.intervals import fit_intervals
from frgb.loading import design_matrix, in_layout
from frgb.targets import Inputs, Target
from frgb.training import FitOptions

OPTIONS = FitOptions(trees={"n_jobs": 1}, layout="fork-v2")
LEVEL = 0.9
TOLERANCE = 1e-4
KINDS = [(t, i, interval) for t in Target for i in Inputs for interval in (False, True)]


@pytest.fixture(scope="module")
def fork(small_corpus, tmp_path_factory):
    """A fork-v2 interval model on the small corpus and its eight graphs: both targets, both input
    kinds, point and interval (as `frgb fit --layout fork-v2 --inputs two --inputs one --intervals`)."""
    corpus = in_layout(small_corpus, FORK_V2)
    model = fit_intervals(corpus, OPTIONS, "vmaf_v0.6.1", LEVEL)
    out = tmp_path_factory.mktemp("fork")
    files = {}
    for target, inputs, interval in KINDS:
        write = export_intervals if interval else export
        files[target, inputs, interval] = write(model if interval else model.point_, corpus, out, "m", target,
                                                {"smoke": True}, {}, inputs=inputs).onnx_path
    return corpus, model, files


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def fork_proxy(sess: ort.InferenceSession, features: np.ndarray, block: np.ndarray) -> float:
    """proxy.py run_proxy: one (1, 20) tensor, the graph's first input, the first output."""
    x = np.concatenate([features, block]).astype(np.float32)[None, :]
    outputs = sess.run(None, {sess.get_inputs()[0].name: x})
    return float(outputs[0].reshape(-1)[0])


def successor_proxy(sess: ort.InferenceSession, sidecar: dict, features: np.ndarray, block: np.ndarray) -> float:
    """The successor's proxy.py: inputs by the sidecar's names, a 14-wide block; one input falls
    back to the concatenation."""
    assert block.shape == (14,)
    names = sidecar["input_names"]
    if len(names) == 1:
        feeds = {names[0]: np.concatenate([features, block]).astype(np.float32)[None, :]}
    else:
        feeds = {names[0]: features.astype(np.float32)[None, :], names[1]: block.astype(np.float32)[None, :]}
    return float(sess.run(None, feeds)[0].reshape(-1)[0])


def positional(sess: ort.InferenceSession, features: np.ndarray, codec: np.ndarray) -> list[np.ndarray]:
    """libvmaf's vmaf_dnn_session_run with positional binding: the graph's inputs in order, their
    widths read from the graph."""
    inputs = sess.get_inputs()
    if len(inputs) == 1:
        arrays = [np.hstack([features, codec])]
    else:
        arrays = [features, codec]
    for value, array in zip(inputs, arrays):
        assert value.shape[1] == array.shape[1]
    return sess.run(None, {v.name: a.astype(np.float32) for v, a in zip(inputs, arrays)})


def every_output_bound(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """A C caller binds every output of the graph by name before running it (IOBinding)."""
    binding = sess.io_binding()
    for name, array in feeds.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(array, dtype=np.float32))
    for output in sess.get_outputs():
        binding.bind_output(output.name)
    sess.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()


def reference(model, interval: bool, features: np.ndarray, codec: np.ndarray) -> list[np.ndarray]:
    X = np.hstack([features.astype(np.float32), codec.astype(np.float32)]).astype(np.float64)
    return list(model.predict_interval(X)) if interval else [model.point_.predict(X)]


@pytest.mark.parametrize("target", list(Target))
def test_fork_proxy_scores_the_single_input_graphs_one_row_per_call(fork, target):
    corpus, model, files = fork
    X = design_matrix(corpus)[::7]
    want = reference(model, False, X[:, :N_FEATURES], X[:, N_FEATURES:])[0]
    for interval in (False, True):  # the proxy reads outputs[0]: the score of either graph
        sess = session(files[target, Inputs.ONE, interval])
        got = [fork_proxy(sess, row[:N_FEATURES], row[N_FEATURES:]) for row in X]
        assert np.max(np.abs(np.array(got) - want)) <= TOLERANCE


def test_fork_proxy_cannot_call_a_two_input_graph(fork):
    """Why the single-input graph exists: the proxy's one tensor leaves `codec` unfed."""
    corpus, _, files = fork
    row = design_matrix(corpus)[0]
    with pytest.raises(Exception, match="codec|input"):
        fork_proxy(session(files[Target.ONNXML, Inputs.TWO, False]), row[:N_FEATURES], row[N_FEATURES:])


@pytest.mark.parametrize("inputs", list(Inputs))
def test_successor_proxy_feeds_names_from_the_sidecar_and_a_14_wide_block(fork, inputs):
    corpus, model, files = fork
    X = design_matrix(corpus)[::11]
    want = reference(model, False, X[:, :N_FEATURES], X[:, N_FEATURES:])[0]
    for target in Target:
        path = files[target, inputs, False]
        sidecar = json.loads(path.with_suffix(".json").read_text())
        sess = session(path)
        got = [successor_proxy(sess, sidecar, row[:N_FEATURES], row[N_FEATURES:]) for row in X]
        assert np.max(np.abs(np.array(got) - want)) <= TOLERANCE


def test_a_14_wide_caller_is_refused_by_the_card_graph(fitted, tmp_path, small_corpus):
    """The successor's proxy hard-codes 14: the card's 8-wide graph fails there, the fork-v2 one runs."""
    path = export(fitted, small_corpus, tmp_path, "card", Target.ONNXML, {"smoke": True}, {}).onnx_path
    sidecar = json.loads(path.with_suffix(".json").read_text())
    with pytest.raises(Exception, match="codec|dimension|Got"):
        successor_proxy(session(path), sidecar, small_corpus.features[0], np.zeros(14))


@pytest.mark.parametrize("target, inputs, interval", KINDS)
def test_positional_binding_gives_every_output_of_every_graph(fork, target, inputs, interval):
    corpus, model, files = fork
    X = design_matrix(corpus)
    got = positional(session(files[target, inputs, interval]), X[:, :N_FEATURES], X[:, N_FEATURES:])
    want = reference(model, interval, X[:, :N_FEATURES], X[:, N_FEATURES:])
    assert len(got) == len(want) == (3 if interval else 1)
    for g, w in zip(got, want):
        assert np.max(np.abs(g - w)) <= TOLERANCE


@pytest.mark.parametrize("target", list(Target))
def test_libvmaf_per_frame_batch_one_binding_every_output(fork, target):
    """Per frame, batch 1, the codec block zero-filled with slot w - 3 set, every output bound: the
    same numbers as one batched call, and those of the codec-blind vector (the guard)."""
    corpus, model, files = fork
    features = corpus.features[::5]
    block = np.zeros(FORK_V2.codec_width, dtype=np.float32)
    block[FORK_V2.codec_width - 3] = 1.0
    assert FORK_V2.codec_block_layout[FORK_V2.codec_width - 3] == "encoder_onehot[unknown]"
    for inputs in Inputs:
        sess = session(files[target, inputs, True])
        names = [i.name for i in sess.get_inputs()]
        rows = []
        for f in features:
            feeds = ({names[0]: np.hstack([f, block])[None, :]} if inputs is Inputs.ONE
                     else {names[0]: f[None, :], names[1]: block[None, :]})
            rows.append([o.reshape(-1)[0] for o in every_output_bound(sess, feeds)])
        per_frame = np.array(rows).T
        batched = positional(sess, features, np.tile(block, (len(features), 1)))
        blind = reference(model, True, features, np.tile(FORK_V2.codec_blind, (len(features), 1)))
        assert per_frame.shape == (3, len(features))
        assert np.max(np.abs(per_frame - np.array(batched))) <= TOLERANCE  # float32 sums: batch 1 differs by ulps
        assert np.max(np.abs(per_frame - np.array(blind))) <= TOLERANCE
        assert np.all(per_frame[1] <= per_frame[0]) and np.all(per_frame[0] <= per_frame[2])


def test_go_port_single_input_from_the_sidecar(fork):
    """The Go port: one input only; one-hot built from the sidecar's encoder_vocab (unknown as the
    fallback), always normalising with feature_mean / feature_std (identity here)."""
    corpus, model, files = fork
    path = files[Target.LIBVMAF, Inputs.ONE, False]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    sess = session(path)
    assert len(sess.get_inputs()) == 1 and sidecar["input_names"] == ["features"]
    assert sidecar["onnx_has_scaler"] is True and sidecar["feature_mean"] == [0.0] * 6
    vocab = sidecar["encoder_vocab"]
    for i in range(0, len(corpus), 13):
        name = corpus.encoder[i] if corpus.encoder[i] in vocab else "unknown"
        block = np.zeros(len(sidecar["codec_block_layout"]))
        block[vocab.index(name)] = 1.0
        block[-2:] = corpus.codec[i, -2:]
        features = (corpus.features[i] - np.array(sidecar["feature_mean"])) / np.array(sidecar["feature_std"])
        got = sess.run(None, {sidecar["input_names"][0]: np.hstack([features, block]).astype(np.float32)[None, :]})
        want = reference(model, False, corpus.features[i:i + 1], block[None, :])[0]
        assert abs(got[0][0] - want[0]) <= TOLERANCE


@pytest.mark.parametrize("target", list(Target))
def test_unseen_encoders_get_the_codec_blind_score_and_the_widest_margin(fork, target, rng):
    """The hardware slots (no training row), `unknown` with any preset and CRF, and an all-zeros
    block: score, lower and upper equal the codec-blind vector's, in Python and in both graphs;
    their margin is the widest margin of the trained slots."""
    corpus, model, files = fork
    vocab = FORK_V2.encoder_vocab
    trusted = model.point_.trusted_slots_
    assert [vocab[s] for s in trusted] == ["libx264", "libx265", "libsvtav1", "libvvenc", "libvpx-vp9"]
    features = corpus.features[rng.integers(0, len(corpus), 40)]
    blocks = []
    for slot in [vocab.index(e) for e in HARDWARE_ENCODERS] + [FORK_V2.unknown_slot]:
        block = np.zeros((len(features), FORK_V2.codec_width))
        block[:, slot] = 1.0
        block[:, -2:] = rng.uniform(0, 1, (len(features), 2))
        blocks.append(block)
    blocks.append(np.zeros((len(features), FORK_V2.codec_width)))
    blind = np.tile(FORK_V2.codec_blind, (len(features), 1))
    want = reference(model, True, features, blind)
    margins = model.margins_
    untrusted = [s for s in range(len(vocab)) if s not in trusted]
    assert np.all(margins[untrusted] == margins[list(trusted)].max())
    for inputs in Inputs:
        sess = session(files[target, inputs, True])
        for block in blocks:
            np.testing.assert_array_equal(reference(model, True, features, block), want)
            got = positional(sess, features, block)
            assert max(np.max(np.abs(g - w)) for g, w in zip(got, want)) <= TOLERANCE


@pytest.mark.parametrize("target, inputs, interval", KINDS)
def test_every_fork_graph_meets_the_contract_and_its_sidecar_serves_every_reader(fork, target, inputs, interval):
    _, _, files = fork
    path = files[target, inputs, interval]
    report = check_model(path)
    assert report.meets_contract, report.contract_problems
    assert (report.layout, report.inputs) == ("fork-v2", inputs.value)
    assert report.libvmaf_loadable == (target is Target.LIBVMAF), report.offending_ops
    sidecar = json.loads(path.with_suffix(".json").read_text())
    expected = {"kind": "fr", "name": path.stem, "input_name": "features", "output_name": "score", "onnx_opset": 17,
                "quant_mode": "fp32", "onnx_has_scaler": True, "encoder_vocab_version": 2,
                "input_names": ["features"] if inputs is Inputs.ONE else ["features", "codec"],
                "output_names": ["score", "lower", "upper"] if interval else ["score"],
                "feature_order": ["adm2", "vif_scale0", "vif_scale1", "vif_scale2", "vif_scale3", "motion2"],
                "feature_mean": [0.0] * 6, "feature_std": [1.0] * 6, "encoder_vocab": list(FORK_V2.encoder_vocab),
                "license": "BSD-2-Clause-Patent"}
    assert {k: sidecar.get(k) for k in expected} == expected
    assert "Codec guard" in sidecar["unseen_encoders"] and sidecar["frgb"]["layout"] == "fork-v2"


def test_per_frame_rows_are_libvmaf_frames_and_the_benchmark_measures_them():
    """data/per-frame.jsonl (benchmarks/per_frame.py --make): every row's frames are libvmaf's, so the
    prior pooled per frame is vmaf_score; the benchmark's per-frame calls run on the shipped graphs."""
    import importlib.util

    from tests.helpers import REPO

    path = REPO / "benchmarks" / "per_frame.py"
    spec = importlib.util.spec_from_file_location("per_frame", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(REPO / "data" / "per-frame.jsonl", REPO / "model")
    figures = result["figures"]
    assert result["rows"] == 60 and result["frames"] == 3000
    assert figures["prior alone, per frame then mean"]["rmse"] <= 1e-3
    for name in bench.GRAPHS:
        assert figures[f"{name}, per encode (mean features)"]["rmse"] < figures[
            "prior alone, per encode (mean features)"]["rmse"]


@pytest.mark.parametrize("target", list(Target))
def test_card_single_input_graphs_with_and_without_an_input_scaler(fitted, small_corpus, tmp_path, target):
    """The card's 8-wide block in one (N, 14) input, the prior fed the features half; with
    --input-scaler the graph maps that half back to raw features first."""
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"feature_mean": [0.955, 0.518, 0.862, 0.916, 0.945, 8.95],
                               "feature_std": [0.034, 0.158, 0.119, 0.086, 0.063, 4.33]}))
    X = design_matrix(small_corpus)
    want = fitted.predict(X)
    for scaler in (None, old):
        exported = export(fitted, small_corpus, tmp_path / str(scaler is None), "m", target, {"smoke": True}, {},
                          scaler, inputs=Inputs.ONE)
        assert exported.onnx_path.name == f"m{target.suffix}_single.onnx"
        report = check_model(exported.onnx_path)
        assert report.meets_contract and (report.layout, report.inputs) == ("card", "one")
        sidecar = json.loads(exported.sidecar_path.read_text())
        assert sidecar["onnx_has_scaler"] is (scaler is None)
        features = (X[:, :N_FEATURES] - np.array(sidecar["feature_mean"])) / np.array(sidecar["feature_std"])
        sess = session(exported.onnx_path)
        got = [fork_proxy(sess, f, c) for f, c in zip(features[::9], X[::9, N_FEATURES:])]
        assert np.max(np.abs(np.array(got) - want[::9])) <= (TOLERANCE if scaler is None else 1e-3)
