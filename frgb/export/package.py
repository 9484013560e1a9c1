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
from frgb.contract import FEATURES, INTERVAL_OUTPUTS, N_FEATURES, OPSET, OUTPUT_SCORE, Layout
from frgb.errors import FrgbError
from frgb.export.graph import Graph, to_onnx
from frgb.export.interval_graph import IntervalGraph
from frgb.export.thresholds import threshold_rows
from frgb.intervals import METHOD, IntervalRegressor
from frgb.loading import Corpus
from frgb.model import FrgbRegressor
from frgb.targets import INTERVAL_SUFFIX, Inputs, Strategy, Target

#: Largest |onnxruntime - Python| on any row and output that an export may have.
PARITY_TOLERANCE = 1e-4
#: Rows per onnxruntime call in the parity check: bounds the graph's intermediate tensors (the
#: libvmaf target's tree evaluation holds about 11 kB per row), whatever the corpus size.
PARITY_BATCH = 1 << 14


#: What the registry's `quant_mode` and libvmaf's sidecar key of that name say: float32 weights.
QUANT_MODE = "fp32"
#: The license of an exported model that embeds one of VMAF's own models as its prior: the
#: graph holds that SVR's support vectors and coefficients (frgb/vmaf_models/, Netflix's
#: BSD-2-Clause-Patent), so the file is distributed under those terms (which also cover frgb's
#: trees; frgb's code is BSD-3-Clause, whose terms BSD-2-Clause-Patent meets).
VMAF_LICENSE = {"license": "BSD-2-Clause-Patent", "license_url": "https://github.com/Netflix/vmaf/blob/master/LICENSE"}
#: The license of a model without a VMAF prior (`--prior none`): only frgb's own trees, frgb's license.
FRGB_LICENSE = {"license": "BSD-3-Clause", "license_url": "https://opensource.org/license/bsd-3-clause"}


def model_license(prior: str | None, override: str | None = None) -> dict:
    """`license` (an SPDX id), `license_url` where known, and why, for a model with teacher `prior`."""
    if override:
        return {"license": override, "license_reason": "given with frgb fit --license"}
    if prior is None:
        return {**FRGB_LICENSE, "license_reason": "no VMAF model inside: frgb's own trees, under frgb's license"}
    if prior.removesuffix(".json").rsplit("/", 1)[-1] in ("vmaf_v0.6.1", "vmaf_4k_v0.6.1"):
        return {**VMAF_LICENSE, "license_reason": (
            f"the graph embeds VMAF's {prior} SVR (support vectors and coefficients, frgb/vmaf_models/, "
            "Netflix, BSD-2-Clause-Patent); the whole file, frgb's trees included, carries that license")}
    return {"license": "NOASSERTION", "license_reason": (
        f"the graph embeds the VMAF model {prior}, whose license frgb does not know: pass frgb fit --license")}


def file_stem(name: str, layout: Layout, target: Target, inputs: Inputs, interval: bool = False) -> str:
    """`<id><layout><target><inputs>[_interval]`: frgb.onnx for the card's two-input onnxml graph,
    frgb_fork_v2_libvmaf_single_interval.onnx for the most decorated one."""
    return name + layout.file_suffix + Target(target).suffix + Inputs(inputs).suffix + (INTERVAL_SUFFIX * interval)


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
        got = session.run(None, graph.layout.feeds(graph.inputs, block[:, :N_FEATURES], block[:, N_FEATURES:]))
        want = graph.outputs(block[:, :N_FEATURES], block[:, N_FEATURES:])
        if len(got) != len(want):
            raise FrgbError(f"the graph has {len(got)} outputs, its Python reference {len(want)}")
        for g, w in zip(got, want):
            diff = np.abs(g.astype(np.float64) - w)
            worst = max(worst, np.inf if np.isnan(diff).any() else float(diff.max()))  # NaN never passes
    return Parity(float(worst), len(rows), len(probe))


def layout_notes(graph: Graph | IntervalGraph) -> str:
    """What the notes say about a layout and inputs other than the card's two inputs."""
    layout, note = graph.layout, ""
    if layout.file_suffix:
        note += (f" Codec block: the {layout.name} layout, {layout.codec_width} wide (encoder vocabulary version "
                 f"{layout.vocab_version}).")
    if graph.inputs is Inputs.ONE:
        note += f" One input {layout.input_features} (N, {N_FEATURES + layout.codec_width}): features then codec."
    return note


def unseen_encoders(graph: Graph | IntervalGraph) -> str:
    """What the graph does with a codec block whose encoder slot had no training rows (sidecar)."""
    vocab = graph.layout.encoder_vocab
    if graph.guard is None:
        return ("No codec guard: the trees score every codec block as given. The codec-blind vector (unknown = 1, "
                "preset_norm = crf_norm = 0.5) gives the codec-unaware score; an all-zeros block or a slot without "
                "training rows gets whatever the trees give it and, in an interval graph, no margin of its own "
                "(frgb fit --codec-guard adds the guard).")
    trusted = ", ".join(vocab[s] for s in graph.guard)
    return (f"Codec guard: a block whose one-hot sets a trained encoder slot ({trusted}) is scored as given; any "
            "other block (unknown with any preset and CRF, an encoder slot without training rows, all zeros) is "
            "scored as the codec-blind vector, so its score equals the codec-blind score, and an interval graph "
            "gives it the widest codec-blind margin over the encoders.")


def consumer_keys(graph: Graph | IntervalGraph, name: str, license: dict) -> dict:
    """The sidecar keys other readers look for: libvmaf's C loader (kind, name, input_name,
    output_name, onnx_opset, quant_mode), the fork's sidecar (encoder_vocab_version) and its
    successors (input_names, output_names, onnx_has_scaler: whether the scaler is inside the
    graph, so that a reader must not apply feature_mean/feature_std itself), and the license."""
    inputs = [n for n, _ in graph.layout.input_specs(graph.inputs)]
    identity = bool(np.all(graph.input_mean == 0) and np.all(graph.input_std == 1))
    return {
        "name": name,
        "input_name": inputs[0],
        "input_names": inputs,
        "output_name": OUTPUT_SCORE,
        "onnx_opset": OPSET,
        "quant_mode": QUANT_MODE,
        # The folded scaler is inside the graph; with --input-scaler the graph takes features scaled
        # with feature_mean/feature_std, which the caller must apply.
        "onnx_has_scaler": identity,
        "encoder_vocab_version": graph.layout.vocab_version,
        "unseen_encoders": unseen_encoders(graph),
        **license,
    }


def sidecar(model: FrgbRegressor, graph: Graph, name: str, target: Target, training: dict, provenance: dict,
            check: Parity, license: dict | None = None) -> dict:
    booster = model.booster_
    layout = graph.layout
    return {
        "id": name,
        "kind": "fr",
        "opset": OPSET,
        "notes": (
            f"frgb {__version__} gradient-boosted fr_regressor_v2 replacement ({target.value} target): "
            f"{'VMAF teacher prior ' + str(model.prior) + ' + ' if model.prior else ''}"
            f"LightGBM on the residual, {booster.num_trees()} trees. Feature thresholds are folded into the "
            "graph: feature_mean/feature_std below are what callers apply (identity unless --input-scaler)."
            + layout_notes(graph)
        ),
        **consumer_keys(graph, name, license or model_license(model.prior)),
        "output_names": [OUTPUT_SCORE],
        "feature_order": list(FEATURES),
        "feature_mean": graph.input_mean.tolist(),
        "feature_std": graph.input_std.tolist(),
        "codec_aware": True,
        "encoder_vocab": list(layout.encoder_vocab),
        "codec_block_layout": list(layout.codec_block_layout),
        "training": training,
        "run_provenance": provenance,
        "frgb": {
            "version": __version__,
            "target": target.value,
            "layout": layout.name,
            "inputs": graph.inputs.value,
            "codec": {"preset_norm": f"preset ordinal / {layout.preset_scale:g} (ordinal {layout.default_preset_ordinal} "
                                     "for a preset not in its encoder's table; see frgb/contract.py)",
                      "crf_norm": f"crf / {layout.crf_scale:g} (libx264, libx265: crf clipped to 51)",
                      "codec_blind": list(layout.codec_blind),
                      "guard": None if graph.guard is None else [layout.encoder_vocab[s] for s in graph.guard]},
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
           provenance: dict, input_scaler: Path | None = None, strategy: Strategy | str = Strategy.AUTO,
           inputs: Inputs | str = Inputs.TWO, license: str | None = None) -> Exported:
    """Convert, check parity, and only then write `file_stem(...).onnx`, its sidecar and registry row
    (`corpus` in the model's layout)."""
    target = Target(target)
    graph = Graph(model, *_scaling(input_scaler), inputs=Inputs(inputs))
    proto_bytes, check = _checked(graph, target, strategy, corpus)
    file_name = file_stem(name, graph.layout, target, graph.inputs)
    meta = sidecar(model, graph, file_name, target, training, provenance, check, model_license(model.prior, license))
    onnx_path, sidecar_path = write_model(out, file_name, proto_bytes, meta)
    return Exported(target.value, onnx_path, sidecar_path, check)


def export_intervals(model: IntervalRegressor, corpus: Corpus, out: Path, name: str, target: Target | str,
                     training: dict, provenance: dict, input_scaler: Path | None = None,
                     strategy: Strategy | str = Strategy.AUTO, inputs: Inputs | str = Inputs.TWO,
                     license: str | None = None) -> Exported:
    """As `export`, for an interval model: `<name><suffix>_interval.onnx` with outputs score, lower,
    upper, checked on all three."""
    target = Target(target)
    graph = IntervalGraph(model, *_scaling(input_scaler), inputs=Inputs(inputs))
    proto_bytes, check = _checked(graph, target, strategy, corpus)
    file_name = file_stem(name, graph.layout, target, graph.inputs, interval=True)
    meta = sidecar(model.point_, graph, file_name, target, training, provenance, check,
                   model_license(model.prior, license))
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
