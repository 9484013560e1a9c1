"""From a fitted model to files on disk: convert, prove parity in onnxruntime, then write.

Nothing is written unless the graph agrees with the Python model within `PARITY_TOLERANCE` on
every output, every training row and rows placed on, just below and just above every split
threshold (of each tree ensemble: the interval graph has three).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from frgb import __version__
from frgb.artifacts import write_model
from frgb.contract import (
    CODEC_BLOCK_LAYOUT, ENCODER_VOCAB, FEATURES, INPUT_CODEC, INPUT_FEATURES, INTERVAL_OUTPUTS, N_FEATURES, OPSET,
    OUTPUT_SCORE,
)
from frgb.errors import FrgbError
from frgb.export.graph import Graph, to_onnx
from frgb.export.interval_graph import IntervalGraph
from frgb.export.thresholds import threshold_rows
from frgb.intervals import METHOD, IntervalRegressor
from frgb.loading import Corpus
from frgb.model import FrgbRegressor
from frgb.targets import INTERVAL_SUFFIX, Strategy, Target

#: Largest |onnxruntime - Python| on any row and output that an export may have.
PARITY_TOLERANCE = 1e-4
#: Rows per onnxruntime call in the parity check: bounds the graph's intermediate tensors (the
#: libvmaf target's tree evaluation holds about 11 kB per row), whatever the corpus size.
PARITY_BATCH = 1 << 14


@dataclass(frozen=True)
class Parity:
    """What the parity check measured: the largest difference over the rows it ran."""

    max_abs_diff: float
    rows: int  # training rows
    threshold_rows: int  # rows on, just below and just above every split threshold


@dataclass
class Exported:
    target: str
    onnx_path: Path
    sidecar_path: Path
    parity: Parity


def read_input_scaler(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """feature_mean / feature_std of an existing sidecar (for --input-scaler)."""
    try:
        data = json.loads(Path(path).read_text())
        mean = np.asarray(data["feature_mean"], dtype=np.float64)
        std = np.asarray(data["feature_std"], dtype=np.float64)
    except OSError as e:
        raise FrgbError(f"{path}: cannot read ({e.strerror})") from None
    except (ValueError, KeyError, TypeError):
        raise FrgbError(f"{path}: not a sidecar with feature_mean and feature_std") from None
    if mean.shape != (N_FEATURES,) or std.shape != (N_FEATURES,) or not np.all(std > 0):
        raise FrgbError(f"{path}: feature_mean/feature_std must be {N_FEATURES} numbers each, std > 0")
    return mean, std


def parity(graph: Graph | IntervalGraph, proto_bytes: bytes, corpus: Corpus) -> Parity:
    """Largest |onnxruntime - Python| over every output, the training rows and the rows at the
    thresholds of every tree ensemble in the graph."""
    features = ((corpus.features - graph.input_mean) / graph.input_std).astype(np.float32)
    rows = np.hstack([features, corpus.codec.astype(np.float32)]).astype(np.float64)
    probe = np.vstack([threshold_rows(trees.booster_, rows) for trees in graph.all_raw_trees()])
    every = np.vstack([rows, probe]).astype(np.float32)
    session = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
    worst = 0.0
    for start in range(0, len(every), PARITY_BATCH):
        block = every[start:start + PARITY_BATCH]
        got = session.run(None, {INPUT_FEATURES: block[:, :N_FEATURES], INPUT_CODEC: block[:, N_FEATURES:]})
        want = graph.outputs(block[:, :N_FEATURES], block[:, N_FEATURES:])
        if len(got) != len(want):
            raise FrgbError(f"the graph has {len(got)} outputs, its Python reference {len(want)}")
        for g, w in zip(got, want):
            diff = np.abs(g.astype(np.float64) - w)
            worst = max(worst, np.inf if np.isnan(diff).any() else float(diff.max()))  # NaN never passes
    return Parity(float(worst), len(rows), len(probe))


def sidecar(model: FrgbRegressor, graph: Graph, name: str, target: Target, training: dict, provenance: dict,
            check: Parity) -> dict:
    booster = model.booster_
    return {
        "id": name,
        "kind": "fr",
        "opset": OPSET,
        "notes": (
            f"frgb {__version__} gradient-boosted fr_regressor_v2 replacement ({target.value} target): "
            f"{'VMAF teacher prior ' + str(model.prior) + ' + ' if model.prior else ''}"
            f"LightGBM on the residual, {booster.num_trees()} trees. Feature thresholds are folded into the "
            "graph: feature_mean/feature_std below are what callers apply (identity unless --input-scaler)."
        ),
        "input_names": [INPUT_FEATURES, INPUT_CODEC],
        "output_names": [OUTPUT_SCORE],
        "feature_order": list(FEATURES),
        "feature_mean": graph.input_mean.tolist(),
        "feature_std": graph.input_std.tolist(),
        "codec_aware": True,
        "encoder_vocab": list(ENCODER_VOCAB),
        "codec_block_layout": list(CODEC_BLOCK_LAYOUT),
        "training": training,
        "run_provenance": provenance,
        "frgb": {
            "version": __version__,
            "target": target.value,
            "use_for": target.use,
            "prior": model.prior,
            "fitted_scaler": {"mean": model.scaler_.mean_.tolist(), "scale": model.scaler_.scale_.tolist()},
            "trees": {"n_trees": booster.num_trees(), "params": model.trees_.get_params()},
            "codec_blind_training": model.codec_blind,
            "monotone": model.monotone,
            "seed": model.random_state,
            "parity": {"max_abs_diff": check.max_abs_diff, "training_rows": check.rows,
                       "threshold_rows": check.threshold_rows, "tolerance": PARITY_TOLERANCE},
            "nan_input": "NaN in features gives NaN score (the prior propagates it); do not pass NaN.",
        },
    }


def export(model: FrgbRegressor, corpus: Corpus, out: Path, name: str, target: Target | str, training: dict,
           provenance: dict, input_scaler: Path | None = None, strategy: Strategy | str = Strategy.AUTO) -> Exported:
    """Convert, check parity, and only then write `<name><suffix>.onnx`, its sidecar and registry row."""
    target = Target(target)
    graph = Graph(model, *_scaling(input_scaler))
    proto_bytes, check = _checked(graph, target, strategy, corpus)
    file_name = name + target.suffix
    meta = sidecar(model, graph, file_name, target, training, provenance, check)
    onnx_path, sidecar_path = write_model(out, file_name, proto_bytes, meta)
    return Exported(target.value, onnx_path, sidecar_path, check)


def export_intervals(model: IntervalRegressor, corpus: Corpus, out: Path, name: str, target: Target | str,
                     training: dict, provenance: dict, input_scaler: Path | None = None,
                     strategy: Strategy | str = Strategy.AUTO) -> Exported:
    """As `export`, for an interval model: `<name><suffix>_interval.onnx` with outputs score, lower,
    upper, checked on all three."""
    target = Target(target)
    graph = IntervalGraph(model, *_scaling(input_scaler))
    proto_bytes, check = _checked(graph, target, strategy, corpus)
    file_name = name + target.suffix + INTERVAL_SUFFIX
    meta = sidecar(model.point_, graph, file_name, target, training, provenance, check)
    meta["output_names"] = list(INTERVAL_OUTPUTS)
    meta["notes"] += (f" Interval graph: outputs score, lower, upper, a {model.level:g} prediction interval "
                      "(see `intervals`); lower <= score <= upper on every row.")
    lower = model.lower_.trees_
    meta["intervals"] = {
        "level": model.level,
        "method": METHOD,
        "calibrate_by": model.calibrate_by,
        "quantiles": list(model.alphas),
        "calibration": model.calibration_,
        "quantile_trees": {"n_trees": [m.booster_.num_trees() for m in (model.lower_, model.upper_)],
                           "params": {k: v for k, v in lower.get_params().items() if k != "alpha"}},
    }
    onnx_path, sidecar_path = write_model(out, file_name, proto_bytes, meta)
    return Exported(target.value, onnx_path, sidecar_path, check)


def _scaling(input_scaler: Path | None) -> tuple:
    return read_input_scaler(input_scaler) if input_scaler else ()


def _checked(graph: Graph | IntervalGraph, target: Target, strategy: Strategy | str,
             corpus: Corpus) -> tuple[bytes, Parity]:
    """The graph's bytes and parity figures, or an error if it fails the parity check."""
    proto_bytes = to_onnx(graph, target, strategy).SerializeToString()
    check = parity(graph, proto_bytes, corpus)
    if not check.max_abs_diff <= PARITY_TOLERANCE:
        raise FrgbError(
            f"{target.value} export failed the parity check: largest |onnx - python| = {check.max_abs_diff:.3g} "
            f"(tolerance {PARITY_TOLERANCE:g}) over {check.rows} rows and {check.threshold_rows} threshold rows; "
            "nothing written"
        )
    return proto_bytes, check
