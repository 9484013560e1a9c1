"""Leave-one-source-out evaluation, the MLP baseline on the same folds, and `frgb report`."""

import json
import re

import numpy as np
import pytest

from frgb.baseline import ACTIVATION, HIDDEN_LAYERS, MlpBaseline
from frgb.comparison import Contender, compare, frgb_contender, mlp_contender
from frgb.loading import load_corpus
from frgb.model import DEFAULT_TREES, PLAIN_TREES
from frgb.loading import design_matrix
from frgb.training import FitOptions
from tests.conftest import write_jsonl

FAST_MLP = 30  # epochs: enough to run the code paths, not to converge


class FoldSpy:
    """A contender whose k-th model predicts k for every row and remembers what it trained on."""

    def __init__(self):
        self.trained_on: list[frozenset] = []
        self.rows_predicted = 0

    def fit(self, part):
        self.trained_on.append(frozenset(part.group.tolist()))
        spy, k = self, len(self.trained_on) - 1

        class Model:
            def predict(self, X):
                spy.rows_predicted += len(X)
                return np.full(len(X), float(k))

        return Model()


def test_every_row_is_predicted_once_by_a_model_that_never_saw_its_source(small_corpus):
    spy = FoldSpy()
    result = compare(small_corpus, [Contender("spy", "", spy.fit)])
    sources = set(small_corpus.group.tolist())
    assert len(spy.trained_on) == len(sources), "one fold per source"
    assert spy.rows_predicted == 2 * len(small_corpus), "each row once with its codec block, once blind"
    model_of_row = result.predictions["spy"].score.astype(int)
    for row, k in enumerate(model_of_row):
        assert small_corpus.group[row] not in spy.trained_on[k], "a row was predicted by a model that saw its source"
        assert spy.trained_on[k] == sources - {small_corpus.group[row]}, "a fold left out more than the held-out source"
    for g in sources:
        assert len(set(model_of_row[small_corpus.group == g])) == 1, "a source was split across folds"


def test_folds_follow_src_sha256_not_the_display_name(small_corpus_path, tmp_path):
    rows = [json.loads(line) for line in small_corpus_path.read_text().splitlines()]
    first = rows[0]["src"]
    renamed = [{**r, "src": r["src"] + (":renamed" if i % 2 else "")} if r["src"] == first else r
               for i, r in enumerate(rows)]
    corpus = load_corpus(write_jsonl(tmp_path / "renamed.jsonl", renamed))
    spy = FoldSpy()
    compare(corpus, [Contender("spy", "", spy.fit)])
    assert len(spy.trained_on) == len({r["src_sha256"] for r in rows}), "a renamed source became its own fold"


def test_mlp_baseline_trains_on_exactly_the_folds_frgb_trains_on(small_corpus):
    seen = {}

    def spying(contender):
        seen[contender.name] = []

        def fit(part):
            seen[contender.name].append(frozenset(part.group.tolist()))
            return contender.fit(part)

        return Contender(contender.name, contender.description, fit)

    options = FitOptions(trees={"n_estimators": 10})
    result = compare(small_corpus, [spying(frgb_contender("frgb", options, "vmaf_v0.6.1")),
                                    spying(mlp_contender(options, max_iter=FAST_MLP))])
    assert seen["frgb"] == seen["mlp"]
    assert result.summary("mlp")["per_source"].keys() == result.summary("frgb")["per_source"].keys()
    wins = result.wins("frgb", "mlp")
    assert sum(wins.values()) == len(seen["frgb"])


def test_mlp_baseline_has_the_fr_regressor_v2_shape_and_a_standardised_target(small_corpus):
    model = MlpBaseline(max_iter=FAST_MLP).fit(design_matrix(small_corpus), small_corpus.target)
    mlp = model.regressor_.regressor_.named_steps["mlp"]
    assert mlp.hidden_layer_sizes == HIDDEN_LAYERS == (16, 16) and mlp.activation == ACTIVATION
    assert mlp.solver == "adam" and mlp.n_outputs_ == 1 and mlp.random_state == 0
    assert abs(model.regressor_.transformer_.mean_[0] - small_corpus.target.mean()) < 1e-9
    pred = model.predict(design_matrix(small_corpus))
    assert pred.shape == (len(small_corpus),) and pred.min() >= 0 and pred.max() <= 100


def test_eval_loso_prints_folds_and_json_with_the_baseline_side_by_side(cli, small_corpus_path):
    result = cli(*["eval", "--loso", "--corpus", str(small_corpus_path), "--json",
                                 "--mlp-max-iter", str(FAST_MLP)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert set(data["contenders"]) == {"frgb", "trees", "prior", "mlp"}
    assert data["scheme"] == "leave-one-source-out" and len(data["folds"]) == 4
    frgb = data["contenders"]["frgb"]
    for key in ("per_source", "mean_over_sources", "pooled", "per_encoder", "codec_blind"):
        assert key in frgb, key
    assert frgb["mean_over_sources"]["plcc"] > 0.99
    assert sum(data["versus"]["rmse"].values()) == 4
    text = cli(*["eval", "--loso", "--corpus", str(small_corpus_path), "--no-baseline"])
    assert text.exit_code == 0, text.output
    assert "held-out source" in text.output and "mean PLCC" in text.output and "libx264" in text.output


def test_eval_refuses_a_model_and_loso_together(cli, tmp_path):
    result = cli(*["eval", str(tmp_path / "m.onnx"), "--loso"])
    assert result.exit_code == 2 and "not both" in result.output and "Traceback" not in result.output


def test_report_writes_markdown_and_every_png_it_links(cli, small_corpus_path, tmp_path, monkeypatch):
    # speed: the report, not the models, is under test
    monkeypatch.setitem(DEFAULT_TREES, "n_estimators", 20)
    monkeypatch.setitem(PLAIN_TREES, "n_estimators", 20)
    (tmp_path / "bench_fit.md").write_text("| rows | frgb fit s |\n|---|---:|\n| 1 | 0.1 |\n")
    result = cli(*["report", "--corpus", str(small_corpus_path), "--out", str(tmp_path),
                                 "--mlp-max-iter", str(FAST_MLP)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "evaluation.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 5
    for link in links:
        png = tmp_path / link
        assert png.is_file(), f"the report links {link}, which was not written"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, f"{link} is not a figure"
    for heading in ("## Headline", "per held-out source", "## Per encoder", "## Experiment: monotone constraints",
                    "## Fit cost", "## Corpus", "Where the residual trees help the prior"):
        assert heading in text, heading
    assert "| 1 | 0.1 |" in text, "the fit-cost table was not included"
    assert "mlp" in text and "tanh" in text


@pytest.mark.parametrize("n", [1, 7, 16])
def test_teacher_in_blocks_matches_the_direct_kernel(monkeypatch, small_corpus, n):
    import frgb.teacher as teacher_module

    teacher = teacher_module.VmafTeacher().fit()
    X = small_corpus.features[:50]
    z = X * teacher.feature_slope_ + teacher.feature_intercept_
    d2 = ((z[:, None, :] - teacher.support_vectors_[None]) ** 2).sum(axis=2)
    direct = np.exp(-teacher.gamma_ * d2) @ teacher.dual_coef_ - teacher.rho_
    monkeypatch.setattr(teacher_module, "CHUNK_ROWS", n)
    np.testing.assert_allclose(teacher.decision_function(X), direct, rtol=0, atol=1e-10)


def test_parity_check_in_batches_finds_what_one_batch_finds(monkeypatch, small_corpus):
    import frgb.export.package as package
    from frgb.export.graph import Graph, to_onnx
    from frgb.training import fit_model

    graph = Graph(fit_model(small_corpus, FitOptions(trees={"n_estimators": 5}), "vmaf_v0.6.1"))
    proto = to_onnx(graph, "onnxml", "auto").SerializeToString()
    whole = package.parity(graph, proto, small_corpus)
    monkeypatch.setattr(package, "PARITY_BATCH", 97)
    assert package.parity(graph, proto, small_corpus) == whole


@pytest.mark.parametrize("graph", ["frgb_libvmaf_interval.onnx", "frgb_fork_v2_single.onnx"])
def test_scoring_in_slices_gives_what_one_call_gives(monkeypatch, small_corpus, graph):
    """eval and predict score ROWS_PER_CALL rows per call (bounded memory): every output of
    every row, with one input or two, is what one call on all rows gives, within 1e-5 VMAF: onnxruntime's GEMM sums in an order
    that depends on the number of rows, which moves a float32 score by a step or two (a step is
    7.6e-6 near 100)."""
    from pathlib import Path

    import frgb.evaluation as evaluation

    model = evaluation.OnnxModel(Path(__file__).resolve().parent.parent / "model" / graph)
    monkeypatch.setattr(evaluation, "ROWS_PER_CALL", len(small_corpus) + 1)
    whole = model.predict_all(small_corpus)
    monkeypatch.setattr(evaluation, "ROWS_PER_CALL", 7)
    sliced = model.predict_all(small_corpus)
    assert len(small_corpus) > 7 and len(whole[0]) == len(small_corpus)
    for a, b in zip(whole, sliced, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_resampled_benchmark_corpus_keeps_sources_and_codecs(small_corpus):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_fit.py"
    spec = importlib.util.spec_from_file_location("bench_fit", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    big = bench.resampled(small_corpus, 5000)
    assert len(big) == 5000 and set(big.group.tolist()) <= set(small_corpus.group.tolist())
    assert np.isin(big.codec, small_corpus.codec).all() and (big.features >= 0).all()
    assert 0 < np.abs(big.features - small_corpus.features.mean(axis=0)).max() and big.target.max() <= 100

