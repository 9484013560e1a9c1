"""Every codec vector a caller sends: the point score barely moves, the guard maps every vector
without a trained slot onto the codec-blind one, and frgb eval reads any layout from the sidecar.
(The held-out coverage bound on the shipped corpus is in reports/codec-vectors.md.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from frgb.contract import CARD, FORK_V2
from frgb.loading import in_layout
from frgb.training import FitOptions, fit_model
from frgb.vectors import POINT_BOUND, VECTORS, vector_loso

ANCHOR = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "fr_regressor_v2.onnx"


def test_each_vector_is_what_its_sender_sends(small_corpus):
    blocks = {v.name: v.block(FORK_V2, small_corpus) for v in VECTORS}
    assert all(b.shape == (len(small_corpus), 14) for b in blocks.values())
    x264 = np.flatnonzero(small_corpus.encoder == "libx264")[0]
    crf = small_corpus.crf[x264]
    assert blocks["fast"][x264].tolist() == [1] + [0] * 11 + [0.5, min(max((crf - 10) / 41, 0), 1)]
    assert blocks["libvmaf"][0].tolist() == [0] * 11 + [1, 0, 0] and not blocks["zeros"].any()
    assert blocks["blind"][0].tolist() == list(FORK_V2.codec_blind)
    np.testing.assert_array_equal(blocks["card"], in_layout(small_corpus, FORK_V2).codec)


@pytest.mark.parametrize("layout, guard", [("card", None), ("card", True), ("fork-v2", None)])
def test_point_scores_move_less_than_the_bound_under_every_vector_held_out(small_corpus, layout, guard):
    options = FitOptions(layout=layout, codec_guard=guard)
    result = vector_loso(in_layout(small_corpus, {"card": CARD, "fork-v2": FORK_V2}[layout]), options,
                         "vmaf_v0.6.1")
    assert result["codec_guard"] == (guard or layout == "fork-v2")
    for name, figures in result["vectors"].items():
        assert figures["max_move"] <= POINT_BOUND, (name, figures)
    if result["codec_guard"]:  # every vector without a trained slot gives exactly the codec-blind scores
        blind = result["vectors"]["blind"]
        for name in ("libvmaf", "zeros"):
            assert result["vectors"][name]["rmse"] == blind["rmse"]


def test_guarded_and_unguarded_fork_v2_keep_the_accuracy_of_the_card(small_corpus):
    """Six of the fork's fourteen slots never have a row: without the guard the trees are the
    card's; with it only the rows of `unknown` (libaom-av1) are scored codec-blind."""
    card = fit_model(small_corpus, FitOptions(), "vmaf_v0.6.1")
    fork = in_layout(small_corpus, FORK_V2)
    X_card = np.hstack([small_corpus.features, small_corpus.codec])
    X_fork = np.hstack([fork.features, fork.codec])
    plain = fit_model(fork, FitOptions(layout="fork-v2", codec_guard=False), "vmaf_v0.6.1")
    np.testing.assert_allclose(plain.predict(X_fork), card.predict(X_card), atol=1e-9)
    guarded = fit_model(fork, FitOptions(layout="fork-v2"), "vmaf_v0.6.1")
    rmse = [np.sqrt(np.mean((m.predict(X) - small_corpus.target) ** 2)) for m, X in ((card, X_card),
                                                                                     (guarded, X_fork))]
    assert abs(rmse[0] - rmse[1]) <= 0.005


def test_eval_prints_the_vector_table_and_reads_the_layout_from_the_sidecar(cli, small_corpus_path, tmp_path):
    result = cli("fit", "--layout", "fork-v2", "--inputs", "one", "--out", tmp_path, "--corpus", small_corpus_path,
                 "--no-cv", "--target", "libvmaf")
    assert result.exit_code == 0, result.output
    model = tmp_path / "frgb_fork_v2_libvmaf_single.onnx"
    result = cli("eval", model, "--corpus", small_corpus_path)
    assert result.exit_code == 0, result.output
    for name in (v.name for v in VECTORS):
        assert f"  {name} " in result.output
    data = json.loads(cli("eval", model, "--corpus", small_corpus_path, "--json").output)
    assert data["layout"] == {"name": "fork-v2", "codec_width": 14, "inputs": ["features"]}
    assert all(v["holds"] for v in data["codec_vectors"].values())
    result = cli("predict", model, small_corpus_path)
    assert result.exit_code == 0 and "predicted_vmaf" in result.output


def test_eval_vectors_writes_the_held_out_report(cli, small_corpus_path, tmp_path, monkeypatch):
    from frgb.model import DEFAULT_TREES

    monkeypatch.setitem(DEFAULT_TREES, "n_estimators", 10)  # the report, not the model, is under test
    report = tmp_path / "codec-vectors.md"
    result = cli("eval", "--vectors", "--layout", "fork-v2", "--corpus", small_corpus_path, "--report", report)
    assert result.exit_code == 0, result.output
    text = report.read_text()
    assert "## fork-v2 (14 wide), codec guard on" in text and "`libvmaf`" in text
    assert "frgb eval --corpus" in text and "--vectors" in text


def test_eval_of_the_forks_own_14_wide_checkpoint_follows_its_sidecar(cli, small_corpus_path):
    if not ANCHOR.is_file():
        pytest.skip("shared/anchors not beside the checkout")
    result = cli("eval", ANCHOR, "--corpus", small_corpus_path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["layout"] == {"name": "fork-v2", "codec_width": 14, "inputs": ["features", "codec"]}
    assert 0 < data["plcc"] < 1
