"""The `frgb fit` workflow: load a corpus, fit, cross-validate by source, export every target.

This is the only module that imports every stage; each stage knows nothing of the ones after it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from frgb.artifacts import read_registry_document, sha256_bytes
from frgb.contract import layout_named
from frgb.cv import OnFold, out_of_fold, summarise
from frgb.export.package import export, export_intervals, file_stem
from frgb.intervals import check_level, fit_intervals, interval_report
from frgb.loading import SHIPPED_CORPUS, design_matrix, in_layout, load_corpus
from frgb.metrics import scores
from frgb.registry import check_id, signature_notices
from frgb.targets import Inputs, Strategy, Target
from frgb.training import FitOptions, choose_prior, fit_model


def _display_path(path: Path) -> str:
    """The shipped corpus by its repository path (the same in every checkout); others as given."""
    shipped = Path(path).resolve() == SHIPPED_CORPUS
    return str(SHIPPED_CORPUS.relative_to(SHIPPED_CORPUS.parent.parent)) if shipped else str(path)


@dataclass
class FitReport:
    """What `frgb fit` did, for printing or as JSON."""

    corpus: str
    rows_used: int
    rows_dropped: dict[str, int]
    prior: str | None
    rows_other_vmaf_model: dict[str, int]
    fit_seconds: float
    in_sample: dict
    cross_validated: dict | None
    exports: list[dict]
    intervals: dict | None = None  # level, method and calibration of the interval model, if one was fitted
    notices: list[str] = field(default_factory=list)  # one line each: what the write changed beyond the models


def train(corpus_path: Path, out: Path, name: str, options: FitOptions, targets: list[Target],
          input_scaler: Path | None = None, cv: bool = True, strategy: Strategy = Strategy.AUTO,
          argv: list[str] | None = None, on_fold: OnFold | None = None,
          intervals: float | None = None, inputs: list[Inputs] | None = None,
          license: str | None = None) -> FitReport:
    """Load a corpus, fit, cross-validate by source, export every target after its parity check.

    With `intervals` (a level in (0, 1)), also fit the interval model around the same point model
    (frgb.intervals) and export its graph for every target. The codec layout is `options.layout`;
    each target is exported for every kind of `inputs` (default: two inputs). An existing
    registry in `out` that cannot be read stops the fit before anything is trained."""
    targets = [Target(t) for t in targets]
    kinds = [Inputs(i) for i in (inputs or [Inputs.TWO])]
    layout = layout_named(options.layout)
    if intervals is not None:
        check_level(intervals)
    for interval in [False] + ([True] if intervals is not None else []):
        for target in targets:
            for kind in kinds:
                check_id(file_stem(name, layout, target, kind, interval))
    registry_before = read_registry_document(out)
    corpus = in_layout(load_corpus(corpus_path), layout)
    choice = choose_prior(corpus, options.prior)
    started = time.perf_counter()
    interval = fit_intervals(corpus, options, choice.model, intervals) if intervals is not None else None
    model = interval.point_ if interval else fit_model(corpus, options, choice.model)
    seconds = time.perf_counter() - started
    in_sample = scores(model.predict(design_matrix(corpus)), corpus.target)
    cross = None
    if cv:
        pred = out_of_fold(corpus, lambda part: fit_model(part, options, choice.model), on_fold)
        summary = summarise(pred, corpus)
        cross = {"scheme": "leave-one-source-out", "folds": len(summary["per_source"]),
                 "pooled": summary["pooled"], "mean_over_sources": summary["mean_over_sources"],
                 "codec_blind": summary["codec_blind"]}
    training = {
        "dataset": Path(corpus.path).name,
        "n_rows": len(corpus),
        "n_sources": len(set(corpus.group.tolist())),
        "rows_dropped": corpus.dropped,
        "in_sample_plcc": in_sample["plcc"],
        "in_sample_srocc": in_sample["srocc"],
        "in_sample_rmse": in_sample["rmse"],
        "smoke": False,
    }
    if cross:
        training.update({f"loso_{k}": v for k, v in cross["mean_over_sources"].items()})
    provenance = {
        "trainer": "frgb fit",
        "argv": list(argv or []),
        "corpus_path": _display_path(corpus_path),
        "corpus_sha256": corpus.sha256,
        "targets": [t.value for t in targets],
        "inputs": [k.value for k in kinds],
        "options": asdict(options),
        "prior": choice.model,
    }
    exports = [export(model, corpus, out, name, target, training, provenance, input_scaler, strategy, kind, license)
               for target in targets for kind in kinds]
    if interval:
        exports += [export_intervals(interval, corpus, out, name, target, training, provenance, input_scaler,
                                     strategy, kind, license)
                    for target in targets for kind in kinds]
    notices = signature_notices(registry_before,
                                {e.onnx_path.stem: sha256_bytes(e.onnx_path.read_bytes()) for e in exports})
    return FitReport(
        corpus=str(corpus_path), rows_used=len(corpus), rows_dropped=corpus.dropped, prior=choice.model,
        rows_other_vmaf_model=choice.others, fit_seconds=seconds, in_sample=in_sample, cross_validated=cross,
        exports=[{"target": e.target, "onnx": str(e.onnx_path), "sidecar": str(e.sidecar_path),
                  "parity_max_abs_diff": e.parity.max_abs_diff, "rows_checked": e.parity.rows,
                  "threshold_rows": e.parity.threshold_rows} for e in exports],
        intervals=None if interval is None else interval_report(interval, corpus),
        notices=notices,
    )
