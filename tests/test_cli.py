"""The command line: a happy path and one-line errors with a non-zero exit, never a traceback."""

import json

import pytest

from tests.helpers import invoke, write_jsonl


@pytest.fixture(scope="module")
def fitted_dir(small_corpus_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    result = invoke("fit", "--corpus", small_corpus_path, "--out", out, "--id", "m")
    assert result.exit_code == 0, result.output
    return out


def test_fit_writes_both_targets_sidecars_and_registry(fitted_dir):
    registry = json.loads((fitted_dir / "registry.json").read_text())
    assert [r["id"] for r in registry["models"]] == ["m", "m_libvmaf"]
    sidecar = json.loads((fitted_dir / "m.json").read_text())
    for key in ("id", "kind", "onnx", "opset", "sha256", "notes", "input_names", "output_names", "feature_order",
                "feature_mean", "feature_std", "codec_aware", "encoder_vocab", "codec_block_layout", "training",
                "run_provenance"):
        assert key in sidecar, key
    assert sidecar["training"]["loso_plcc"] > 0.99


def test_eval_prints_metrics_and_gates_on_plcc(fitted_dir, small_corpus_path):
    result = invoke("eval", fitted_dir / "m.onnx", "--corpus", small_corpus_path, "--plcc", "--json")
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["plcc"] > 0.99 and "libx264" in data["per_encoder"]
    assert "codec_blind" in data
    gated = invoke("eval", fitted_dir / "m.onnx", "--corpus", small_corpus_path, "--min-plcc", "1")
    assert gated.exit_code == 1 and "below the gate" in gated.output


def test_predict_writes_one_line_per_row(fitted_dir, small_corpus_path, tmp_path):
    out = tmp_path / "pred.jsonl"
    result = invoke("predict", fitted_dir / "m_libvmaf.onnx", small_corpus_path, "-o", out)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(small_corpus_path.read_text().splitlines())
    assert all(abs(r["predicted_vmaf"] - r["vmaf_score"]) < 5 for r in lines)


def test_check_exit_codes_say_which(fitted_dir):
    assert invoke("check", fitted_dir / "m_libvmaf.onnx").exit_code == 0
    result = invoke("check", fitted_dir / "m.onnx")
    assert result.exit_code == 1 and "TreeEnsembleRegressor" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("fit", "--corpus", "{tmp}/missing.jsonl", "--out", "{tmp}/o"), "missing.jsonl: no such file"),
        (("fit", "--corpus", "{tmp}", "--out", "{tmp}/o"), "bad.jsonl:2: malformed JSON"),  # a folder of shards
        (("fit", "--corpus", "{tmp}/empty.jsonl", "--out", "{tmp}/o"), "empty"),
        (("fit", "--corpus", "{tmp}/bad.jsonl", "--out", "{tmp}/o"), "bad.jsonl:2: malformed JSON"),
        (("fit", "--target", "tflite", "--out", "{tmp}/o"), "'tflite' is not one of 'onnxml', 'libvmaf'"),
        (("eval", "{tmp}/missing.onnx"), "missing.onnx: no such model file"),
        (("check", "{tmp}/empty.jsonl"), "not a valid ONNX model"),
    ],
)
def test_errors_are_one_line_and_non_zero(tmp_path, args, message):
    (tmp_path / "empty.jsonl").write_text("")
    write_jsonl(tmp_path / "bad.jsonl", [{"src": "a"}, "{not json"])
    result = invoke(*[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "o").exists()
