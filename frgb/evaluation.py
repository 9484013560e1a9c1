"""Scoring ONNX files as a consumer runs them (sidecar scaling, codec block built from each row
in the layout the sidecar names, inputs fed by position: two, or one concatenated), and the
records `frgb predict` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from frgb.contract import (
    ENCODER_VOCAB, INTERVAL_OUTPUTS, N_FEATURES, OUTPUT_SCORE, Layout, codec_blind_block, codec_blocks,
    layout_for_vocab, layout_for_width,
)
from frgb.errors import FrgbError
from frgb.files import is_finite_number, read_json
from frgb.loading import Corpus
from frgb.metrics import by_group, interval_figures, interval_summary, scores
from frgb.targets import Inputs
from frgb.vectors import vector_figures


#: Rows per onnxruntime call: the graphs hold 4-28 KiB per row while they run (the prior's float64
#: blocks; the libvmaf interval graph's indicator blocks), so a whole corpus in one call could take
#: gigabytes. 8,192 rows bound that to about 230 MiB and keep the blocks nearer the cache.
ROWS_PER_CALL = 8192


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
        self.mean, self.std = _sidecar_scaling(sidecar_path, self.sidecar)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: onnxruntime's warnings are not lines of frgb's output
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise FrgbError(f"{self.path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.layout = self._layout()
        self.vocab = self.layout.encoder_vocab
        _check_graph_io(self.path, self.session, self.layout)

    def _layout(self) -> Layout:
        """The codec layout: the sidecar's encoder_vocab, else the one of the graph's codec width."""
        if "encoder_vocab" in self.sidecar:
            return layout_for_vocab(self.sidecar["encoder_vocab"])
        shape = self.session.get_inputs()[-1].shape
        width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        if width is None:
            raise FrgbError(f"{self.path}: neither the sidecar (encoder_vocab) nor the graph says the codec width")
        return layout_for_width(width - N_FEATURES if len(self.input_names) == 1 else width)

    @property
    def has_intervals(self) -> bool:
        """Whether this is an interval graph (outputs score, lower, upper)."""
        return self.output_names == INTERVAL_OUTPUTS

    def run_all(self, features: np.ndarray, codec: np.ndarray) -> list[np.ndarray]:
        """Every output of the graph as float64 (N,): one value per row, or an error. Rows go in
        slices of ROWS_PER_CALL, so memory stays bounded for any corpus."""
        with np.errstate(over="ignore", invalid="ignore"):  # a sidecar's absurd scaling: null scores, no warning
            scaled = ((features - self.mean) / self.std).astype(np.float32)
        codec = np.asarray(codec, dtype=np.float32)
        slices = [self._call(scaled[i:i + ROWS_PER_CALL], codec[i:i + ROWS_PER_CALL])
                  for i in range(0, max(len(scaled), 1), ROWS_PER_CALL)]
        return [np.concatenate(values) for values in zip(*slices)]

    def _call(self, scaled: np.ndarray, codec: np.ndarray) -> list[np.ndarray]:
        if len(self.input_names) == 1:  # one input: features then codec
            feeds = {self.input_names[0]: np.hstack([scaled, codec])}
        else:
            feeds = dict(zip(self.input_names, (scaled, codec)))
        try:
            out = self.session.run(None, feeds)
        except Exception as e:  # onnxruntime's own exception types
            raise FrgbError(f"{self.path}: onnxruntime cannot run it: {str(e).splitlines()[0]}") from None
        for name, value in zip(self.output_names, out):
            if np.shape(value) not in ((len(scaled),), (len(scaled), 1)):
                raise FrgbError(f"{self.path}: output {name} has shape {np.shape(value)} for {len(scaled)} rows; "
                                f"the contract's outputs are one value per row, (N,)")
        return [np.asarray(o, dtype=np.float64).reshape(-1) for o in out]

    def run(self, features: np.ndarray, codec: np.ndarray) -> np.ndarray:
        return self.run_all(features, codec)[0]

    def codec(self, corpus: Corpus) -> np.ndarray:
        return codec_blocks(corpus.encoder.tolist(), corpus.preset.tolist(), corpus.crf, self.layout)[0]

    def predict_all(self, corpus: Corpus, blind: bool = False) -> list[np.ndarray]:
        """Every output for each row of `corpus` (with the codec-blind block if `blind`)."""
        codec = np.tile(codec_blind_block(self.layout), (len(corpus), 1)) if blind else self.codec(corpus)
        return self.run_all(corpus.features, codec)

    def predict(self, corpus: Corpus, blind: bool = False) -> np.ndarray:
        return self.predict_all(corpus, blind)[0]

    def evaluate(self, corpus: Corpus) -> dict:
        """Scores; for an interval graph also coverage and width, overall, per encoder and codec-blind;
        and the figures under each codec vector real callers send (frgb.vectors)."""
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
            level = self.sidecar.get("intervals")
            level = level.get("level") if isinstance(level, dict) else None
            result["intervals"] = {
                "level": level if is_finite_number(level) else None,
                **interval_summary(outputs[1], outputs[2], corpus),
                "codec_blind": interval_figures(blind[1], blind[2], corpus.target),
            }
        # The coverage bound is a held-out one (frgb eval --vectors): here coverage is reported, not judged.
        result["codec_vectors"] = vector_figures(self.run_all, self.layout, corpus)
        result["layout"] = {"name": self.layout.name, "codec_width": self.layout.codec_width,
                            "inputs": list(self.input_names)}
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


def _sidecar_scaling(path: Path, sidecar) -> tuple[np.ndarray, np.ndarray]:
    """feature_mean and feature_std of a sidecar, checked (an error names the problem), and its
    encoder_vocab (if it has one) checked too."""
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
    vocab = sidecar.get("encoder_vocab", list(ENCODER_VOCAB))  # the layout comes from it (OnnxModel._layout)
    if not (isinstance(vocab, list) and all(isinstance(v, str) and v for v in vocab) and len(set(vocab)) == len(vocab)
            and vocab[-1:] == ["unknown"]):
        raise FrgbError(f"{path}: not a model sidecar: encoder_vocab must be distinct encoder names ending in "
                        f"'unknown', got {vocab!r:.60}")
    return np.asarray(sidecar["feature_mean"], dtype=np.float64), std


def _check_graph_io(path: Path, session: ort.InferenceSession, layout: Layout) -> None:
    """The graph takes float32 inputs of `layout` (features (N, 6) and codec (N, codec width), or
    one input of both) and gives `score` (or score, lower, upper), or an error saying how it differs."""
    inputs = session.get_inputs()
    specs = layout.input_specs(Inputs.ONE if len(inputs) == 1 else Inputs.TWO)

    def fits(value, width: int) -> bool:  # float32 (N, width); a symbolic width is taken as given
        shape = value.shape
        return (value.type == "tensor(float)" and len(shape) == 2
                and (shape[1] == width or not isinstance(shape[1], int)))

    if [i.name for i in inputs] != [name for name, _ in specs] or not all(
            fits(value, width) for value, (_, width) in zip(inputs, specs)):
        found = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs) or "none"
        wanted = " and ".join(f"{name} float32 (N, {width})" for name, width in specs)
        what = "6 features, then the sidecar's encoder_vocab + 2" if len(specs) == 1 else "the sidecar's encoder_vocab + 2"
        raise FrgbError(f"{path}: inputs are {found}; the contract's are {wanted} ({what})")
    outputs = tuple(o.name for o in session.get_outputs())
    if outputs not in ((OUTPUT_SCORE,), INTERVAL_OUTPUTS):
        raise FrgbError(f"{path}: outputs are {list(outputs)}; the contract's are ['{OUTPUT_SCORE}'] "
                        f"(or {list(INTERVAL_OUTPUTS)} for an interval graph)")
    for value in session.get_outputs():
        if value.type != "tensor(float)":
            raise FrgbError(f"{path}: output {value.name} is {value.type}; the contract's outputs are float32")
