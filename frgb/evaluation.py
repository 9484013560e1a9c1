"""Scoring ONNX files as a consumer runs them (sidecar scaling, codec block built from each row),
and the records `frgb predict` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from frgb.contract import (
    ENCODER_VOCAB, INPUT_CODEC, INPUT_FEATURES, INTERVAL_OUTPUTS, N_FEATURES, OUTPUT_SCORE, codec_blind_block,
    codec_blocks,
)
from frgb.errors import FrgbError
from frgb.files import MAX_ONNX_BYTES, is_finite_number, read_bytes, read_json
from frgb.loading import Corpus
from frgb.metrics import by_group, interval_figures, interval_summary, scores


class OnnxModel:
    """An ONNX file with its sidecar, called the way an existing consumer calls it."""

    def __init__(self, path: str | Path, threads: int = 0):
        self.path = Path(path)
        sidecar_path = self.path.with_suffix(".json")
        if not self.path.is_file():
            raise FrgbError(f"{self.path}: no such model file")
        if not sidecar_path.is_file():
            raise FrgbError(f"{self.path}: no sidecar {sidecar_path.name} next to it (it says how to scale inputs)")
        self.sidecar = read_json(sidecar_path, "a model sidecar")
        self.mean, self.std, self.vocab = _sidecar_scaling(sidecar_path, self.sidecar)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(read_bytes(self.path, "an ONNX model", MAX_ONNX_BYTES), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise FrgbError(f"{self.path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        _check_graph_io(self.path, self.session, len(self.vocab) + 2)

    @property
    def has_intervals(self) -> bool:
        """Whether this is an interval graph (outputs score, lower, upper)."""
        return self.output_names == INTERVAL_OUTPUTS

    def run_all(self, features: np.ndarray, codec: np.ndarray) -> list[np.ndarray]:
        """Every output of the graph as float64 (N,): one value per row, or an error."""
        scaled = ((features - self.mean) / self.std).astype(np.float32)
        try:
            out = self.session.run(None, {INPUT_FEATURES: scaled, INPUT_CODEC: codec.astype(np.float32)})
        except Exception as e:  # onnxruntime's own exception types
            raise FrgbError(f"{self.path}: onnxruntime cannot run it: {str(e).splitlines()[0]}") from None
        for name, value in zip(self.output_names, out):
            if np.shape(value) not in ((len(features),), (len(features), 1)):
                raise FrgbError(f"{self.path}: output {name} has shape {np.shape(value)} for {len(features)} rows; "
                                f"the contract's outputs are one value per row, (N,)")
        return [np.asarray(o, dtype=np.float64).reshape(-1) for o in out]

    def run(self, features: np.ndarray, codec: np.ndarray) -> np.ndarray:
        return self.run_all(features, codec)[0]

    def codec(self, corpus: Corpus) -> np.ndarray:
        return codec_blocks(corpus.encoder.tolist(), corpus.preset.tolist(), corpus.crf, self.vocab)[0]

    def predict_all(self, corpus: Corpus, blind: bool = False) -> list[np.ndarray]:
        """Every output for each row of `corpus` (with the codec-blind block if `blind`)."""
        codec = np.tile(codec_blind_block(self.vocab), (len(corpus), 1)) if blind else self.codec(corpus)
        return self.run_all(corpus.features, codec)

    def predict(self, corpus: Corpus, blind: bool = False) -> np.ndarray:
        return self.predict_all(corpus, blind)[0]

    def evaluate(self, corpus: Corpus) -> dict:
        """Scores; for an interval graph also coverage and width, overall, per encoder and codec-blind."""
        outputs, blind = self.predict_all(corpus), self.predict_all(corpus, blind=True)
        pred = outputs[0]
        result = {
            "model": str(self.path),
            "corpus": corpus.path,
            "rows_used": len(corpus),
            "rows_dropped": corpus.dropped,
            **scores(pred, corpus.target),
            "per_encoder": by_group(pred, corpus.target, corpus.encoder),
            "codec_blind": scores(blind[0], corpus.target),
        }
        if self.has_intervals:
            result["intervals"] = {
                "level": self.sidecar.get("intervals", {}).get("level"),
                **interval_summary(outputs[1], outputs[2], corpus),
                "codec_blind": interval_figures(blind[1], blind[2], corpus.target),
            }
        return result

    def prediction_records(self, corpus: Corpus) -> list[dict]:
        """One record per row of `corpus`, in file order: its line, source, encoder, preset, crf and
        `predicted_vmaf` (+ `lower`, `upper` for an interval graph, `vmaf_score` where known)."""
        outputs = self.predict_all(corpus)
        records = []
        for i in np.argsort(corpus.line, kind="stable"):
            record = {"line": int(corpus.line[i]), "src": corpus.source[i], "encoder": corpus.encoder[i],
                      "preset": corpus.preset[i], "crf": float(corpus.crf[i]), "predicted_vmaf": _finite(outputs[0][i])}
            if self.has_intervals:
                record["lower"], record["upper"] = _finite(outputs[1][i]), _finite(outputs[2][i])
            if np.isfinite(corpus.target[i]):
                record["vmaf_score"] = float(corpus.target[i])
            records.append(record)
        return records


def _finite(value) -> float | None:
    """A prediction as written: a float, or null where the graph gave NaN or infinity."""
    value = float(value)
    return value if np.isfinite(value) else None


def _sidecar_scaling(path: Path, sidecar) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """feature_mean, feature_std and encoder_vocab of a sidecar, checked (an error names the problem)."""
    if not isinstance(sidecar, dict):
        raise FrgbError(f"{path}: not a model sidecar (a JSON object with feature_mean and feature_std)")
    for key in ("feature_mean", "feature_std"):
        value = sidecar.get(key)
        if not (isinstance(value, list) and len(value) == N_FEATURES and all(map(is_finite_number, value))):
            raise FrgbError(f"{path}: not a model sidecar: {key} must be {N_FEATURES} finite numbers, "
                            f"got {value!r:.60}")
    std = np.asarray(sidecar["feature_std"], dtype=np.float64)
    if not np.all(std > 0):
        raise FrgbError(f"{path}: not a model sidecar: feature_std must be positive, got {std.tolist()}")
    vocab = sidecar.get("encoder_vocab", list(ENCODER_VOCAB))
    if not (isinstance(vocab, list) and all(isinstance(v, str) and v for v in vocab) and len(set(vocab)) == len(vocab)
            and "unknown" in vocab):
        raise FrgbError(f"{path}: not a model sidecar: encoder_vocab must be distinct encoder names including "
                        f"'unknown', got {vocab!r:.60}")
    return np.asarray(sidecar["feature_mean"], dtype=np.float64), std, tuple(vocab)


def _check_graph_io(path: Path, session: ort.InferenceSession, codec_width: int) -> None:
    """The graph takes float32 `features` (N, 6) and `codec` (N, codec_width) and gives `score`
    (or score, lower, upper), or an error saying how it differs."""
    inputs = {i.name: i for i in session.get_inputs()}
    widths = {INPUT_FEATURES: N_FEATURES, INPUT_CODEC: codec_width}

    def fits(value, width: int) -> bool:  # float32 (N, width); a symbolic width is taken as given
        shape = value.shape
        return (value.type == "tensor(float)" and len(shape) == 2
                and (shape[1] == width or not isinstance(shape[1], int)))

    if set(inputs) != set(widths) or not all(fits(inputs[name], width) for name, width in widths.items()):
        found = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs.values())
        raise FrgbError(f"{path}: inputs are {found}; the contract's are {INPUT_FEATURES} float32 (N, {N_FEATURES}) "
                        f"and {INPUT_CODEC} float32 (N, {codec_width}) (the sidecar's encoder_vocab + 2)")
    outputs = tuple(o.name for o in session.get_outputs())
    if outputs not in ((OUTPUT_SCORE,), INTERVAL_OUTPUTS):
        raise FrgbError(f"{path}: outputs are {list(outputs)}; the contract's are ['{OUTPUT_SCORE}'] "
                        f"(or {list(INTERVAL_OUTPUTS)} for an interval graph)")
