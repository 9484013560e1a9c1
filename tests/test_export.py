"""The exported graphs keep the contract, agree with Python, and are reproducible."""

import hashlib
import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from frgb.check import check_model
from frgb.errors import FrgbError
from frgb.export.graph import Graph, to_onnx
from frgb.export.package import export, parity
from frgb.export.thresholds import threshold_rows
from frgb.training import FitOptions, fit_model

TARGETS = ["onnxml", "libvmaf"]


def run_graph(proto, features, codec):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features.astype(np.float32), "codec": codec.astype(np.float32)})[0]


@pytest.mark.parametrize("target", TARGETS)
def test_graph_agrees_with_python_on_rows_and_on_every_threshold(fitted, small_corpus, target):
    graph = Graph(fitted)
    check = parity(graph, to_onnx(graph, target).SerializeToString(), small_corpus)
    worst, n_probe = check.max_abs_diff, check.threshold_rows
    assert n_probe >= 3 * fitted.booster_.num_trees()
    assert worst <= 1e-4, f"{target}: largest |onnx - python| = {worst}"


@pytest.mark.parametrize("strategy", ["table", "gemm", "traversal"])
def test_both_libvmaf_strategies_agree_with_the_onnxml_graph(fitted, small_corpus, strategy):
    graph = Graph(fitted)
    rows = np.hstack([small_corpus.features, small_corpus.codec])
    probe = np.vstack([rows, threshold_rows(graph.raw_trees().booster_, rows)])
    a = run_graph(to_onnx(graph, "onnxml"), probe[:, :6], probe[:, 6:])
    b = run_graph(to_onnx(graph, "libvmaf", strategy), probe[:, :6], probe[:, 6:])
    assert np.max(np.abs(a - b)) <= 1e-4


@pytest.mark.parametrize("target", TARGETS)
def test_graph_meets_the_contract(fitted, tmp_path, target):
    path = tmp_path / "m.onnx"
    path.write_bytes(to_onnx(Graph(fitted), target).SerializeToString())
    report = check_model(path)
    assert report.meets_contract, report.contract_problems
    assert report.libvmaf_loadable == (target == "libvmaf"), report.offending_ops
    model = onnx.load(path)
    assert [o.version for o in model.opset_import if o.domain == ""] == [17]
    if target == "libvmaf":  # no foreign domain is even declared
        assert [o.domain for o in model.opset_import] == [""]


#: An old sidecar's scaling, as a caller of the MLP applies it (--input-scaler).
OLD_SCALER = {"feature_mean": [0.955, 0.518, 0.862, 0.916, 0.945, 8.95],
              "feature_std": [0.034, 0.158, 0.119, 0.086, 0.063, 4.33]}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("scaler", ["raw features (the default)", "--input-scaler"])
def test_a_caller_that_applies_the_sidecar_gets_the_models_scores(fitted, small_corpus, tmp_path, target, scaler):
    """What a caller of the sidecar does: (raw - feature_mean) / feature_std into the graph. It must
    get the Python model's score of the raw features, within the parity tolerance. Fails if the
    sidecar writes a scaling the graph does not take (e.g. the fitted scaler, as the MLP's sidecar
    does, beside a graph of raw features), or if the graph drops its input scaling anywhere (the
    prior's input, the trees' thresholds). The default sidecar is exactly identity."""
    old = None
    if scaler == "--input-scaler":
        old = tmp_path / "old.json"
        old.write_text(json.dumps(OLD_SCALER))
    exported = export(fitted, small_corpus, tmp_path, "m", target, {"smoke": True}, {}, old)
    sidecar = json.loads(exported.sidecar_path.read_text())
    mean, std = np.array(sidecar["feature_mean"]), np.array(sidecar["feature_std"])
    if old is None:
        assert sidecar["feature_mean"] == [0.0] * 6 and sidecar["feature_std"] == [1.0] * 6
        assert sidecar["frgb"]["fitted_scaler"]["mean"] == pytest.approx(fitted.scaler_.mean_.tolist())
    else:
        assert sidecar["feature_mean"] == OLD_SCALER["feature_mean"] and sidecar["feature_std"] == OLD_SCALER["feature_std"]
    got = run_graph(onnx.load(exported.onnx_path), (small_corpus.features - mean) / std, small_corpus.codec)
    want = fitted.predict(np.hstack([small_corpus.features, small_corpus.codec]))
    assert np.max(np.abs(got - want)) <= 1e-4, f"{scaler}: the sidecar's scaling is not what the graph takes"


def test_an_input_scaler_that_loses_the_features_precision_fails_parity_and_writes_nothing(fitted, small_corpus,
                                                                                         tmp_path):
    """feature_mean 1e10: in float32, (x - 1e10) / 1 keeps none of a feature's digits, so the graph
    cannot give the model's scores. Fails if the parity tolerance is widened (the difference is
    finite and large on the check against the unscaled model, or not finite at all)."""
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"feature_mean": [1e10] * 6, "feature_std": [1.0] * 6}))
    out = tmp_path / "out"
    with pytest.raises(FrgbError) as error:
        export(fitted, small_corpus, out, "m", "libvmaf", {"smoke": True}, {}, old)
    assert str(error.value).startswith("libvmaf export failed the parity check")
    assert str(error.value).endswith("nothing written")
    assert not out.exists()


def test_two_fits_with_the_same_seed_give_byte_identical_files(small_corpus, tmp_path):
    digests = []
    for run in ("a", "b"):
        model = fit_model(small_corpus, FitOptions(seed=7), "vmaf_v0.6.1")
        for target in TARGETS:
            e = export(model, small_corpus, tmp_path / run, "m", target, {"smoke": True}, {"argv": ["fit"]})
            digests.append((target, hashlib.sha256(e.onnx_path.read_bytes() + e.sidecar_path.read_bytes()).hexdigest()))
    assert digests[:2] == digests[2:]


def test_figures_are_written_the_same_whatever_their_last_bits():
    """Another machine sums the same numbers in another order and gets another last bit (the
    shipped sidecar's in_sample_rmse was 0.3686492215438153 there and ...8151 here). Written to
    FIGURE_DIGITS significant digits, both give the same bytes; undefined figures are null; the
    scaling callers apply is written exactly. Fails if sidecars write figures at full precision."""
    from frgb.artifacts import dumps

    here = {"in_sample_rmse": 0.3686492215438151, "loso_plcc": 0.9998631842817218, "feature_mean": [0.9550306797027588]}
    there = {"in_sample_rmse": 0.3686492215438153, "loso_plcc": float(np.nextafter(0.9998631842817218, 0)),
             "feature_mean": [0.9550306797027588]}
    assert dumps(here) == dumps(there)
    assert json.loads(dumps(here)) == {"in_sample_rmse": 0.3686492215, "loso_plcc": 0.9998631843,
                                       "feature_mean": [0.9550306797027588]}
    assert json.loads(dumps({"plcc": float("nan"), "rmse": float("inf")})) == {"plcc": None, "rmse": None}
    squares = np.random.default_rng(0).normal(size=100_003) ** 2  # the same squared errors, summed three ways:
    rmse = [float(np.sqrt(np.mean(squares))), math.sqrt(sum(squares.tolist()) / len(squares)),  # pairwise, in order,
            math.sqrt(math.fsum(squares) / len(squares))]  # exactly
    assert len(set(rmse)) > 1, "the sums were meant to differ in their last bits"
    assert len({dumps({"rmse": r}) for r in rmse}) == 1, "the same errors summed in another order give other bytes"


def test_nan_features_give_nan_scores_in_both_graphs(fitted):
    features = np.array([[np.nan, 0.5, 0.8, 0.9, 0.95, 3.0]])
    codec = np.array([[1, 0, 0, 0, 0, 0, 5 / 9, 23 / 63]])
    for target in TARGETS:
        assert np.isnan(run_graph(to_onnx(Graph(fitted), target), features, codec)).all()


def test_nan_codec_still_runs_the_table_strategy(fitted):
    """The table looks leaves up by an index cast from float: a NaN casts to an arbitrary integer,
    and the Clip after the Cast keeps the Gather in range (without it onnxruntime fails the call)."""
    features = np.array([[0.9, 0.5, 0.8, 0.9, 0.95, 3.0]] * 2)
    codec = np.array([[1, 0, 0, 0, 0, 0, 5 / 9, 23 / 63], [1, 0, 0, 0, 0, 0, 5 / 9, np.nan]])
    scores = run_graph(to_onnx(Graph(fitted), "libvmaf", "table"), features, codec)
    assert scores.shape == (2,) and np.isfinite(scores[0])


def _one_split_booster(threshold: float):
    """A LightGBM booster of one tree, one split `x0 <= threshold` (its threshold set by hand)."""
    import re

    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 2, 400).astype(float), rng.normal(size=400)])
    booster = lgb.train({"objective": "regression", "num_leaves": 2, "verbose": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(X, X[:, 0] * 10), num_boost_round=1)
    text = booster.model_to_string()
    assert re.search(r"^split_feature=0$", text, re.MULTILINE), "the tree does not split on x0"
    text = re.sub(r"^threshold=.*$", f"threshold={threshold!r}", text, flags=re.MULTILINE)
    return lgb.Booster(model_str=re.sub(r"^tree_sizes=.*\n", "", text, flags=re.MULTILINE))


def _libvmaf_graph(booster, strategy: str) -> ort.InferenceSession:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from frgb.export.trees_onnx import RawTrees

    trees = RawTrees(booster)
    proto = convert_sklearn(trees, initial_types=[("x", FloatTensorType([None, 2]))],
                            options={id(trees): {"target": "libvmaf", "strategy": strategy}},
                            target_opset={"": 17, "ai.onnx.ml": 3})
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("strategy", ["table", "gemm", "traversal"])
def test_libvmaf_split_is_exact_for_the_smallest_float32_differences(strategy):
    """The compiled comparison computes `x <= t` exactly even when x differs from the threshold
    by the smallest amount a float32 can: 2^-149, a subnormal step. The split sits at the
    smallest normal float32, 2^-126, whose neighbours are exactly 2^-149 away (and at LightGBM's
    1e-35 zero threshold, and at 0). The comparison multiplies the difference by 2^75 twice (2^150
    in all), so 2^-149 becomes 2 and Clip gives exactly 1. Fails if SATURATE is lowered to 2^74:
    the step above 2^-126 then gives Clip(0.5) = 0.5, half of each leaf. (The reference is the
    comparison itself: LightGBM would treat every input within 1e-35 of zero as zero.)"""
    smallest_normal = np.float32(np.finfo(np.float32).smallest_normal)  # 2^-126
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)  # 2^-149
    assert np.nextafter(smallest_normal, np.float32(1)) - smallest_normal == tiny
    for t in (float(smallest_normal), float(np.float32(1.0000000180025095e-35)), 0.0):
        booster = _one_split_booster(t)
        root = booster.dump_model()["tree_info"][0]["tree_structure"]
        x = np.float32(t)
        values = [x, np.nextafter(x, np.float32(-1)), np.nextafter(x, np.float32(1)), 0.0, -0.0, tiny, -tiny, 1.0]
        rows = np.array([[v, w] for v in values for w in (-tiny, 0.0, 0.5)], dtype=np.float32)
        got = _libvmaf_graph(booster, strategy).run(None, {"x": rows})[0].ravel()
        left = rows[:, 0].astype(np.float64) <= root["threshold"]
        want = np.where(left, root["left_child"]["leaf_value"], root["right_child"]["leaf_value"])
        assert left.any() and not left.all(), "the probe rows do not reach both leaves"
        assert np.max(np.abs(got - want)) <= 1e-5, f"threshold {t!r}: inputs {rows[np.abs(got - want) > 1e-5][:, 0]} go astray"


def prior_graph(teacher, dtype):
    """The prior's subgraph alone: features (N, 6) float32 -> clipped teacher score (N, 1)."""
    from skl2onnx.common.data_types import FloatTensorType

    from frgb.export.teacher_onnx import teacher_graph

    node = teacher_graph(teacher, "features", 17, output_names=["score"], dtype=dtype)
    return node.to_onnx(inputs=[("features", FloatTensorType([None, 6]))], target_opset=17)


def feature_grid() -> np.ndarray:
    """adm2 and vif in [0, 1.2], motion2 in [0, 40] (random points and every corner), the shipped
    corpus's rows and the extreme rows other tests use, as float32."""
    from frgb.loading import SHIPPED_CORPUS, load_corpus

    rng = np.random.default_rng(0)
    random = np.column_stack([rng.uniform(0, 1.2, (20000, 5)), rng.uniform(0, 40, 20000)])
    corners = np.array(np.meshgrid(*[[0.0, 1.2]] * 5 + [[0.0, 40.0]])).reshape(6, -1).T
    extreme = np.array([[0.95, 0.6, 0.9, 0.95, 0.97, 4.0], [0.9, 0.5, 0.8, 0.9, 0.95, 3.0],
                        [1.5, 1.5, 1.5, 1.5, 1.5, 1e3], [0.0] * 6, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    return np.vstack([random, corners, extreme, load_corpus(SHIPPED_CORPUS).features]).astype(np.float32)


@pytest.mark.parametrize("model", ["vmaf_v0.6.1", "vmaf_4k_v0.6.1"])
def test_prior_subgraph_matches_the_float64_teacher_across_the_feature_range(model):
    """The bound in frgb/export/teacher_onnx.py is 1.8e-9 VMAF on this range (float64); the graph
    must stay far inside the 1e-4 parity tolerance everywhere, not only on the corpus."""
    from frgb.teacher import VmafTeacher

    teacher = VmafTeacher(model=model).fit()
    grid = feature_grid()
    got = ort.InferenceSession(prior_graph(teacher, np.float64).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"features": grid})[0].ravel()
    worst = float(np.max(np.abs(got - teacher.predict(grid.astype(np.float64)))))
    assert worst <= 1e-8, f"{model}: the float64 prior differs from the teacher by {worst:.3g} VMAF"


def test_a_float32_prior_would_fail_the_parity_tolerance():
    """Why the prior stays in float64: the same graph in float32 misses the teacher by more than
    the 1e-4 tolerance (the SVR sum cancels by a factor of about 500), so the test above would
    catch a precision regression."""
    from frgb.teacher import VmafTeacher

    teacher = VmafTeacher().fit()
    grid = feature_grid()
    got = ort.InferenceSession(prior_graph(teacher, np.float32).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"features": grid})[0].ravel()
    assert float(np.max(np.abs(got - teacher.predict(grid.astype(np.float64))))) > 1e-4
