"""Measuring models: leave-one-source-out cross-validation, and ONNX files run as a consumer
runs them (sidecar scaling, codec block built from each row)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnxruntime as ort

from frgb.contract import (
    CODEC_BLIND, ENCODER_VOCAB, INPUT_CODEC, INPUT_FEATURES, INTERVAL_OUTPUTS, codec_blind_block, codec_blocks,
)
from frgb.errors import FrgbError
from frgb.loading import Corpus
from frgb.metrics import by_group, scores
from frgb.training import design_matrix


@dataclass
class Predictions:
    """Predictions for every row of a corpus, with the row's codec block and with the blind one."""

    score: np.ndarray
    blind: np.ndarray


def blind_matrix(X: np.ndarray) -> np.ndarray:
    out = X.copy()
    out[:, -len(CODEC_BLIND):] = CODEC_BLIND
    return out


def source_folds(corpus: Corpus,
                 on_fold: Callable[[int, int, str], None] = lambda i, n, g: None) -> Iterator[np.ndarray]:
    """The held-out mask of each leave-one-source-out fold, in sorted order of `corpus.group`."""
    groups = sorted(set(corpus.group.tolist()))
    if len(groups) < 2:
        raise FrgbError("leave-one-source-out needs at least two sources in the corpus")
    for i, g in enumerate(groups):
        held = corpus.group == g
        on_fold(i, len(groups), corpus.source[held][0])
        yield held


def out_of_fold(corpus: Corpus, fit: Callable[[Corpus], object],
                on_fold: Callable[[int, int, str], None] = lambda i, n, g: None) -> Predictions:
    """Leave-one-source-out: for each source, fit on the others and predict it."""
    X = design_matrix(corpus)
    score, blind = np.empty(len(corpus)), np.empty(len(corpus))
    for held in source_folds(corpus, on_fold):
        model = fit(corpus.subset(~held))
        score[held] = model.predict(X[held])
        blind[held] = model.predict(blind_matrix(X[held]))
    return Predictions(score, blind)


def summarise(pred: Predictions, corpus: Corpus) -> dict:
    """Pooled, per-source (fold) and per-encoder figures, with and without the codec block."""
    folds = by_group(pred.score, corpus.target, corpus.source)
    fold_values = list(folds.values())
    mean = {k: float(np.nanmean([f[k] for f in fold_values])) for k in ("plcc", "srocc", "rmse")}
    return {
        "pooled": scores(pred.score, corpus.target),
        "mean_over_sources": mean,
        "per_source": folds,
        "per_encoder": by_group(pred.score, corpus.target, corpus.encoder),
        "codec_blind": {
            "pooled": scores(pred.blind, corpus.target),
            "mean_over_sources": {
                k: float(np.nanmean([f[k] for f in by_group(pred.blind, corpus.target, corpus.source).values()]))
                for k in ("plcc", "srocc", "rmse")
            },
        },
    }


class OnnxModel:
    """An ONNX file with its sidecar, called the way an existing consumer calls it."""

    def __init__(self, path: str | Path, threads: int = 0):
        self.path = Path(path)
        sidecar_path = self.path.with_suffix(".json")
        if not self.path.is_file():
            raise FrgbError(f"{self.path}: no such model file")
        if not sidecar_path.is_file():
            raise FrgbError(f"{self.path}: no sidecar {sidecar_path.name} next to it (it says how to scale inputs)")
        try:
            self.sidecar = json.loads(sidecar_path.read_text())
            self.mean = np.asarray(self.sidecar["feature_mean"], dtype=np.float64)
            self.std = np.asarray(self.sidecar["feature_std"], dtype=np.float64)
        except (ValueError, KeyError) as e:
            raise FrgbError(f"{sidecar_path}: not a model sidecar ({e})") from None
        self.vocab = tuple(self.sidecar.get("encoder_vocab", ENCODER_VOCAB))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise FrgbError(f"{self.path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    @property
    def has_intervals(self) -> bool:
        """Whether this is an interval graph (outputs score, lower, upper)."""
        return self.output_names == INTERVAL_OUTPUTS

    def run_all(self, features: np.ndarray, codec: np.ndarray) -> list[np.ndarray]:
        """Every output of the graph as float64 (N,)."""
        scaled = ((features - self.mean) / self.std).astype(np.float32)
        out = self.session.run(None, {INPUT_FEATURES: scaled, INPUT_CODEC: codec.astype(np.float32)})
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
            from frgb.intervals import interval_figures, interval_summary

            result["intervals"] = {
                "level": self.sidecar.get("intervals", {}).get("level"),
                **interval_summary(outputs[1], outputs[2], corpus),
                "codec_blind": interval_figures(blind[1], blind[2], corpus.target),
            }
        return result
