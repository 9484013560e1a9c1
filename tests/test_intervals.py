"""Prediction intervals: calibrated on held-out sources, ordered on every row, the same in ONNX."""

import json
import math

import numpy as np
import onnxruntime as ort
import pytest

from frgb.check import check_model
from frgb.errors import FrgbError
from frgb.contract import with_codec_blind
from frgb.export.graph import to_onnx
from frgb.export.interval_graph import IntervalGraph
from frgb.export.package import parity
from frgb.intervals import conformal_quantile, fit_intervals, out_of_fold_intervals
from frgb.loading import design_matrix
from frgb.training import FitOptions, fit_model

TARGETS = ["onnxml", "libvmaf"]
#: One LightGBM thread: fold fits are many and small (see frgb/intervals.py QUANTILE_TREES).
OPTIONS = FitOptions(trees={"n_jobs": 1})
LEVEL = 0.9


@pytest.fixture(scope="module")
def interval_model(small_corpus):
    return fit_intervals(small_corpus, OPTIONS, "vmaf_v0.6.1", LEVEL)


@pytest.fixture(scope="module")
def graphs(interval_model):
    """The interval graph of each target: (IntervalGraph, its bytes)."""
    graph = IntervalGraph(interval_model)
    return {t: (graph, to_onnx(graph, t).SerializeToString()) for t in TARGETS}


def run_graph(proto_bytes, features, codec):
    session = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features.astype(np.float32), "codec": codec.astype(np.float32)})


def probe_rows(corpus, rng):
    """Corpus rows, their codec-blind copies and random rows far outside the corpus."""
    X = design_matrix(corpus)
    wild = X[rng.integers(0, len(X), 300)].copy()
    wild[:, :6] *= rng.uniform(0.0, 3.0, (300, 6))
    return np.vstack([X, with_codec_blind(X), wild])


def test_margin_is_the_ceil_n_plus_1_times_level_smallest_score():
    scores = np.arange(1.0, 20.0)  # 19 scores: ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.9) == 18.0
    assert conformal_quantile(scores, 0.95) == 19.0
    with pytest.raises(FrgbError, match="cannot calibrate"):
        conformal_quantile(scores, 0.96)  # ceil(20 * 0.96) = 20 > 19 rows
    # n where ceil(n * level) and ceil((n + 1) * level) differ: the (n + 1) rank is the guarantee.
    assert conformal_quantile(np.arange(1.0, 11.0), 0.9) == 10.0  # ceil(11 * 0.9) = 10, not ceil(10 * 0.9) = 9
    assert conformal_quantile(np.arange(1.0, 41.0), 0.95) == 39.0  # ceil(41 * 0.95) = 39, not 38


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_margin_is_the_smallest_score_that_covers_a_new_row_with_probability_level(level):
    """The split-conformal guarantee, stated without the formula: with n exchangeable scores and a
    new one, the new score's rank among the n + 1 is uniform, so it is at most the k-th smallest of
    the n with probability k / (n + 1). The margin must be the k-th smallest for the smallest k with
    k / (n + 1) >= level. Fails if the rank is taken as ceil(n * level) (too small for most n), and
    it pins the error for n too small to reach the level."""
    rng = np.random.default_rng(0)
    for n in range(1, 250):
        scores = rng.permutation(np.arange(1.0, n + 1.0))  # the k-th smallest is k
        needed = next((k for k in range(1, n + 1) if k / (n + 1) >= level - 1e-12), None)
        if needed is None:
            with pytest.raises(FrgbError, match="cannot calibrate"):
                conformal_quantile(scores, level)
            continue
        assert conformal_quantile(scores, level) == needed, f"n={n}: the {needed}-th smallest score is the margin"


def test_lower_le_score_le_upper_on_every_row_in_python_and_both_graphs(interval_model, graphs, small_corpus, rng):
    X = probe_rows(small_corpus, rng)
    outputs = [interval_model.predict_interval(X)]
    outputs += [run_graph(proto, X[:, :6], X[:, 6:]) for _, proto in graphs.values()]
    for score, lower, upper in outputs:
        assert np.all(lower <= score) and np.all(score <= upper), "an interval does not contain its own score"
        assert np.all(lower >= 0) and np.all(upper <= 100)


def test_point_output_is_the_point_model_frgb_fit_exports(interval_model, small_corpus):
    X = design_matrix(small_corpus)
    np.testing.assert_array_equal(interval_model.predict_interval(X)[0],
                                  fit_model(small_corpus, OPTIONS, "vmaf_v0.6.1").predict(X))


@pytest.mark.parametrize("target", TARGETS)
def test_interval_graph_agrees_with_python_on_all_three_outputs(interval_model, graphs, small_corpus, target):
    check = parity(*graphs[target], small_corpus)
    worst, n_probe = check.max_abs_diff, check.threshold_rows
    n_trees = sum(m.booster_.num_trees() for m in (interval_model.point_, interval_model.lower_, interval_model.upper_))
    assert n_probe >= 3 * n_trees, "threshold rows must probe all three tree ensembles"
    assert worst <= 1e-4, f"{target}: largest |onnx - python| over score, lower, upper = {worst}"


@pytest.mark.parametrize("target", TARGETS)
def test_interval_graph_keeps_the_inputs_and_libvmaf_target_stays_on_the_allowlist(graphs, tmp_path, target):
    path = tmp_path / "m.onnx"
    path.write_bytes(graphs[target][1])
    report = check_model(path)
    assert report.meets_contract, report.contract_problems
    assert report.libvmaf_loadable == (target == "libvmaf"), report.offending_ops


def binomial_tolerance(level: float, n: int) -> float:
    """Three standard deviations of the share of n independent rows inside a `level` interval."""
    return 3 * math.sqrt(level * (1 - level) / n)


def test_coverage_on_held_out_rows_is_the_level_within_binomial_noise(small_corpus):
    """The conformal machinery on exchangeable rows: with rows dealt at random into 5 folds (so a
    fold is no different from the rest), held-out coverage must not fall below the level by more
    than 3 binomial standard deviations of n rows (0.044 at 0.9 for 424 rows): that is the
    guarantee. Above, cross-conformal calibration is conservative (fold models see fewer rows
    than the exported ones, so their scores are larger), so the upper limit only asks that the
    interval still misses at least half as often as the level allows."""
    corpus = small_corpus.subset(np.ones(len(small_corpus), dtype=bool))
    corpus.group = np.random.default_rng(1).permutation(len(corpus)) % 5
    corpus.source = corpus.group.astype(str)
    pred = out_of_fold_intervals(corpus, lambda part: fit_intervals(part, OPTIONS, "vmaf_v0.6.1", LEVEL))
    inside = (corpus.target >= pred.lower) & (corpus.target <= pred.upper)
    assert LEVEL - binomial_tolerance(LEVEL, len(corpus)) <= inside.mean() <= LEVEL + (1 - LEVEL) / 2, inside.mean()


def test_coverage_on_held_out_sources_is_near_the_level(small_corpus):
    """Leave-one-source-out, the test the issue sets. Rows of one source share its errors, so the
    spread of coverage is set by the number of sources, not of rows: the tolerance is three
    cluster-robust standard errors (sd of per-source coverage / sqrt(sources)), never less than
    the binomial one of n rows."""
    pred = out_of_fold_intervals(small_corpus, lambda part: fit_intervals(part, OPTIONS, "vmaf_v0.6.1", LEVEL))
    inside = (small_corpus.target >= pred.lower) & (small_corpus.target <= pred.upper)
    per_source = np.array([inside[small_corpus.group == g].mean() for g in sorted(set(small_corpus.group))])
    cluster = 3 * per_source.std(ddof=1) / math.sqrt(len(per_source))
    tolerance = max(cluster, binomial_tolerance(LEVEL, len(inside)))
    assert abs(inside.mean() - LEVEL) <= tolerance, (inside.mean(), tolerance, per_source)
    assert np.all(pred.lower <= pred.score) and np.all(pred.score <= pred.upper)




def test_fit_intervals_writes_the_interval_graph_that_eval_check_and_predict_read(cli, small_corpus_path, small_corpus,
                                                                                 tmp_path):
    out = tmp_path / "model"
    graph = str(out / "m_libvmaf_interval.onnx")
    result = cli(*["fit", "--corpus", str(small_corpus_path), "--out", str(out), "--id", "m",
                                 "--no-cv", "--target", "libvmaf", "--intervals", "0.9"])
    assert result.exit_code == 0, result.output
    registry = json.loads((out / "registry.json").read_text())
    assert [r["id"] for r in registry["models"]] == ["m_libvmaf", "m_libvmaf_interval"]
    sidecar = json.loads((out / "m_libvmaf_interval.json").read_text())
    assert sidecar["output_names"] == ["score", "lower", "upper"]
    assert sidecar["intervals"]["level"] == 0.9 and "conformalized" in sidecar["intervals"]["method"]
    assert sidecar["intervals"]["calibration"]["sources"] == len(set(small_corpus.group))
    result = cli(*["eval", graph, "--corpus", str(small_corpus_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["intervals"]
    assert 0 < data["coverage"] <= 1 and data["mean_width"] > 0 and "libx264" in data["per_encoder"]
    assert cli(*["check", graph]).exit_code == 0
    pred = tmp_path / "pred.jsonl"
    result = cli(*["predict", graph, str(small_corpus_path), "-o", str(pred)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    assert len(rows) == len(small_corpus) and all(r["lower"] <= r["predicted_vmaf"] <= r["upper"] for r in rows)


@pytest.mark.parametrize("level", ["0", "1", "1.5", "-0.1"])
def test_fit_refuses_a_level_outside_0_1_in_one_line(cli, small_corpus_path, tmp_path, level):
    result = cli(*["fit", "--corpus", str(small_corpus_path), "--out", str(tmp_path / "o"),
                                 "--intervals", level])
    assert result.exit_code == 2 and "between 0 and 1" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_eval_intervals_measures_leave_one_source_out_and_writes_the_report(cli, small_corpus_path, small_corpus, tmp_path):
    report = tmp_path / "intervals.md"
    result = cli(*["eval", "--intervals", "0.9", "--corpus", str(small_corpus_path),
                                 "--report", str(report), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    figures = data["levels"]["0.9"]
    assert data["sources"] == len(set(small_corpus.group)) and figures["n"] == len(small_corpus)
    assert set(figures["per_encoder"]) == set(small_corpus.encoder) and data["point_loso"]["pooled"]["rmse"] > 0
    text = report.read_text()
    assert "## Per encoder" in text
    assert f"frgb eval --corpus {small_corpus_path} --intervals 0.9 --report {report} --json" in text


def test_eval_refuses_a_model_with_intervals_in_one_line(cli, tmp_path):
    result = cli(*["eval", str(tmp_path / "m.onnx"), "--intervals", "0.9"])
    assert result.exit_code == 2 and "give only MODEL" in result.output


def test_two_fits_with_the_same_seed_give_byte_identical_interval_graphs(interval_model, graphs, small_corpus):
    again = fit_intervals(small_corpus, OPTIONS, "vmaf_v0.6.1", LEVEL)
    assert again.calibration_ == interval_model.calibration_
    assert to_onnx(IntervalGraph(again), "onnxml").SerializeToString() == graphs["onnxml"][1]
