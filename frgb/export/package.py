"""From a fitted model to files on disk: convert, prove parity in onnxruntime, then write.

Nothing is written unless the graph agrees with the Python model within `PARITY_TOLERANCE` on
every output, every training row and rows placed on, just below and just above every split
threshold (of each tree ensemble: the interval graph has three), and unless a caller who scales
the training rows with the sidecar's feature_mean / feature_std gets the scores the model gives
their raw features (with --input-scaler those values are the caller's and could lose the
features' precision in float32). Every export of one fit is checked before any is written, and
all are written as one replacement (`write_exports`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from frgb import __version__
from frgb.artifacts import write_models
from frgb.contract import FEATURES, INTERVAL_OUTPUTS, N_FEATURES, OPSET, OUTPUT_SCORE
from frgb.errors import FrgbError
from frgb.export.graph import Graph, to_onnx
from frgb.export.interval_graph import IntervalGraph
from frgb.export.thresholds import threshold_rows
from frgb.files import is_finite_number, read_json
from frgb.intervals import METHOD, IntervalRegressor
from frgb.loading import Corpus
from frgb.model import FrgbRegressor
from frgb.targets import Inputs, Strategy, Target

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


@dataclass(frozen=True)
class Parity:
    """What the parity check measured: the largest difference over the rows it ran."""

    max_abs_diff: float
    rows: int  # training rows
    threshold_rows: int  # rows on, just below and just above every split threshold
    #: Largest |graph(features scaled with the sidecar's values) - model(raw features)| on the
    #: training rows: what a caller of the sidecar gets against what the model gives.
    raw_max_abs_diff: float = 0.0


@dataclass
class Exported:
    target: str
    onnx_path: Path
    sidecar_path: Path
    parity: Parity


@dataclass
class Staged:
    """An export that passed its parity check, ready to be written: `<name>.onnx` and its sidecar."""

    target: str
    name: str
    onnx: bytes
    sidecar: dict
    parity: Parity


def read_input_scaler(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """feature_mean / feature_std of an existing sidecar (for --input-scaler)."""
    data = read_json(path, "a sidecar")
    values = [data.get(key) if isinstance(data, dict) else None for key in ("feature_mean", "feature_std")]
    if not all(isinstance(v, list) and len(v) == N_FEATURES and all(map(is_finite_number, v)) for v in values):
        raise FrgbError(f"{path}: --input-scaler needs a sidecar whose feature_mean and feature_std are "
                        f"{N_FEATURES} finite numbers each")
    mean, std = (np.asarray(v, dtype=np.float64) for v in values)
    if not np.all(std > 0):
        raise FrgbError(f"{path}: feature_std must be positive, got {std.tolist()}")
    return mean, std


def parity(graph: Graph | IntervalGraph, proto_bytes: bytes, corpus: Corpus) -> Parity:
    """Largest |onnxruntime - Python| over every output, the training rows and the rows at the
    thresholds of every tree ensemble in the graph; and on the training rows, the largest
    difference between the graph fed features scaled with its input scaling and the unscaled
    model fed the raw features."""
    features = ((corpus.features - graph.input_mean) / graph.input_std).astype(np.float32)
    rows = np.hstack([features, corpus.codec.astype(np.float32)]).astype(np.float64)
    probe = np.vstack([threshold_rows(trees.booster_, rows) for trees in graph.all_raw_trees()])
    every = np.vstack([rows, probe]).astype(np.float32)
    raw = np.hstack([corpus.features, corpus.codec]).astype(np.float32)  # what a caller that does not scale passes
    identity = not (np.any(graph.input_mean != 0) or np.any(graph.input_std != 1))  # then `rows` are `raw`
    unscaled = replace(graph, input_mean=np.zeros(N_FEATURES), input_std=np.ones(N_FEATURES))
    session = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
    worst = worst_raw = 0.0
    for start in range(0, len(every), PARITY_BATCH):
        block = every[start:start + PARITY_BATCH]
        got = session.run(None, graph.layout.feeds(graph.inputs, block[:, :N_FEATURES], block[:, N_FEATURES:]))
        want = graph.outputs(block[:, :N_FEATURES], block[:, N_FEATURES:])
        if len(got) != len(want):
            raise FrgbError(f"the graph has {len(got)} outputs, its Python reference {len(want)}")
        worst = max(worst, _largest_difference(got, want))
        if start < len(raw):  # the training rows of this block, against the model on raw features
            raw_block = raw[start:start + PARITY_BATCH]
            reference = want if identity else unscaled.outputs(raw_block[:, :N_FEATURES], raw_block[:, N_FEATURES:])
            n = len(raw_block)
            worst_raw = max(worst_raw, _largest_difference([g[:n] for g in got], [w[:n] for w in reference]))
    return Parity(float(worst), len(rows), len(probe), float(worst_raw))


def _largest_difference(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """max |got - want| over every output (inf if any difference is NaN: NaN never passes)."""
    worst = 0.0
    for g, w in zip(got, want):
        diff = np.abs(g.astype(np.float64) - w)
        worst = max(worst, np.inf if np.isnan(diff).any() else float(diff.max(initial=0.0)))
    return worst


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
            "parity": {"max_abs_diff": _noise_floor(check.max_abs_diff), "training_rows": check.rows,
                       "threshold_rows": check.threshold_rows, "tolerance": PARITY_TOLERANCE,
                       "raw_max_abs_diff": _noise_floor(check.raw_max_abs_diff)},
            "nan_input": "NaN in features gives NaN score (the prior propagates it); do not pass NaN.",
        },
    }


def _noise_floor(diff: float) -> float:
    """A parity difference as written: three significant digits. It is the difference of two
    scores near 100 (float32 against float64), whose last bits vary with the machine's kernels."""
    return float(f"{diff:.3g}")


def stage(model: FrgbRegressor, corpus: Corpus, name: str, target: Target | str, training: dict, provenance: dict,
          scaling: tuple = (), strategy: Strategy | str = Strategy.AUTO, inputs: Inputs | str = Inputs.TWO,
          license: str | None = None) -> Staged:
    """Convert and check parity: `Layout.file_stem(...).onnx` and its sidecar, ready for `write_exports`
    (`corpus` in the model's layout). `scaling` is (feature_mean, feature_std) of --input-scaler,
    or () for raw features."""
    target = Target(target)
    graph = Graph(model, *scaling, inputs=Inputs(inputs))
    proto_bytes, check = _checked(graph, target, strategy, corpus)
    file_name = graph.layout.file_stem(name, target, graph.inputs)
    meta = sidecar(model, graph, file_name, target, training, provenance, check, model_license(model.prior, license))
    return Staged(target.value, file_name, proto_bytes, meta, check)


def stage_intervals(model: IntervalRegressor, corpus: Corpus, name: str, target: Target | str, training: dict,
                    provenance: dict, scaling: tuple = (), strategy: Strategy | str = Strategy.AUTO,
                    inputs: Inputs | str = Inputs.TWO, license: str | None = None) -> Staged:
    """As `stage`, for an interval model: `Layout.file_stem(..., interval=True).onnx` with outputs score,
    lower, upper, checked on all three."""
    target = Target(target)
    graph = IntervalGraph(model, *scaling, inputs=Inputs(inputs))
    proto_bytes, check = _checked(graph, target, strategy, corpus)
    file_name = graph.layout.file_stem(name, target, graph.inputs, interval=True)
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
    return Staged(target.value, file_name, proto_bytes, meta, check)


def write_exports(out: Path, staged: list[Staged]) -> list[Exported]:
    """Write every staged export and its registry row into `out` as one replacement: all of them,
    or (on a full disk, a failed rename, a kill) none (frgb.artifacts.write_models)."""
    paths = write_models(out, [(s.name, s.onnx, s.sidecar) for s in staged])
    return [Exported(s.target, onnx_path, sidecar_path, s.parity)
            for s, (onnx_path, sidecar_path) in zip(staged, paths)]


def export(model: FrgbRegressor, corpus: Corpus, out: Path, name: str, target: Target | str, training: dict,
           provenance: dict, input_scaler: Path | None = None, strategy: Strategy | str = Strategy.AUTO,
           inputs: Inputs | str = Inputs.TWO, license: str | None = None) -> Exported:
    """Convert, check parity, and only then write `Layout.file_stem(...).onnx`, its sidecar and registry row."""
    staged = stage(model, corpus, name, target, training, provenance, _scaling(input_scaler), strategy, inputs,
                   license)
    return write_exports(out, [staged])[0]


def export_intervals(model: IntervalRegressor, corpus: Corpus, out: Path, name: str, target: Target | str,
                     training: dict, provenance: dict, input_scaler: Path | None = None,
                     strategy: Strategy | str = Strategy.AUTO, inputs: Inputs | str = Inputs.TWO,
                     license: str | None = None) -> Exported:
    """As `export`, for an interval model (see `stage_intervals`)."""
    staged = stage_intervals(model, corpus, name, target, training, provenance, _scaling(input_scaler), strategy,
                             inputs, license)
    return write_exports(out, [staged])[0]


def _scaling(input_scaler: Path | None) -> tuple:
    return read_input_scaler(input_scaler) if input_scaler else ()


def _checked(graph: Graph | IntervalGraph, target: Target, strategy: Strategy | str,
             corpus: Corpus) -> tuple[bytes, Parity]:
    """The graph's bytes and parity figures, or an error if it fails the parity check."""
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.abs((corpus.features - graph.input_mean) / graph.input_std)
    if not np.all(scaled <= np.finfo(np.float32).max):
        raise FrgbError(
            f"{target.value} export failed the parity check on raw features: scaled with the input scaling "
            f"(feature_mean/feature_std), the training rows reach {np.nanmax(scaled):.3g}, beyond float32; "
            "nothing written"
        )
    proto_bytes = to_onnx(graph, target, strategy).SerializeToString()
    check = parity(graph, proto_bytes, corpus)
    if not check.max_abs_diff <= PARITY_TOLERANCE:
        raise FrgbError(
            f"{target.value} export failed the parity check: largest |onnx - python| = {check.max_abs_diff:.3g} "
            f"(tolerance {PARITY_TOLERANCE:g}) over {check.rows} rows and {check.threshold_rows} threshold rows; "
            "nothing written"
        )
    if not check.raw_max_abs_diff <= PARITY_TOLERANCE:
        raise FrgbError(
            f"{target.value} export failed the parity check on raw features: fed the training rows scaled with the "
            f"input scaling (feature_mean/feature_std), the graph is up to {check.raw_max_abs_diff:.3g} from the "
            f"model's score of the raw rows (tolerance {PARITY_TOLERANCE:g}): in float32 those values lose the "
            "features' precision; nothing written"
        )
    return proto_bytes, check
