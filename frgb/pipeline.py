"""The `frgb fit` workflow: load a corpus, fit, cross-validate by source, export every target.

This is the only module that imports every stage; each stage knows nothing of the ones after it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from frgb.artifacts import REGISTRY, registry_document, sha256_bytes
from frgb.contract import layout_named
from frgb.cv import OnFold, out_of_fold, summarise
from frgb.errors import FrgbError
from frgb.export.package import read_input_scaler, stage, stage_intervals, write_exports
from frgb.files import same_file
from frgb.intervals import check_level, fit_intervals, interval_report
from frgb.loading import SHIPPED_CORPUS, design_matrix, in_layout, load_corpus
from frgb.metrics import scores
from frgb.outputs import fit_outputs
from frgb.registry import check_license, signature_notices
from frgb.targets import Inputs, Strategy, Target
from frgb.teacher import BUILTIN_MODELS
from frgb.training import FitOptions, check_trainable, choose_prior, fit_model


def _display_path(path: Path) -> str:
    """The shipped corpus by its repository path (the same in every checkout); others as given."""
    shipped = same_file(path, SHIPPED_CORPUS)
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


def _choices(targets, strategy) -> tuple[list[Target], Strategy]:
    """The export targets and the libvmaf strategy as enums, or a one-line error (before any work)."""
    try:
        return list(dict.fromkeys(Target(t) for t in targets)), Strategy(strategy)
    except ValueError as e:
        raise FrgbError(f"{e}; targets: {', '.join(t.value for t in Target)}, "
                        f"strategies: {', '.join(s.value for s in Strategy)}") from None


def train(corpus_path: Path, out: Path, name: str, options: FitOptions, targets: list[Target],
          input_scaler: Path | None = None, cv: bool = True, strategy: Strategy = Strategy.AUTO,
          argv: list[str] | None = None, on_fold: OnFold | None = None,
          intervals: float | None = None, inputs: list[Inputs] | None = None,
          license: str | None = None) -> FitReport:
    """Load a corpus, fit, cross-validate by source, export every target after its parity check.

    With `intervals` (a level in (0, 1)), also fit the interval model around the same point model
    (frgb.intervals) and export its graph for every target. The codec layout is `options.layout`;
    each target is exported for every kind of `inputs` (default: two inputs). Everything that can
    be checked is checked before fitting (options, output names, the files read, the corpus);
    every file is written at the end, as one replacement of the previous set."""
    targets, strategy = _choices(targets, strategy)
    kinds = list(dict.fromkeys(Inputs(i) for i in (inputs or [Inputs.TWO])))
    layout = layout_named(options.layout)
    if intervals is not None:
        check_level(intervals)
    if license is not None:
        check_license(license)
    prior_file = Path(options.prior) if options.prior not in ("auto", "none", *BUILTIN_MODELS) else None
    fit_outputs(out, name, layout, targets, kinds, intervals is not None,
                {"the corpus": Path(corpus_path), "the VMAF model file": prior_file})
    registry_before = registry_document(Path(out) / REGISTRY)
    scaling = read_input_scaler(input_scaler) if input_scaler else ()
    corpus = in_layout(load_corpus(corpus_path), layout)
    check_trainable(corpus, cv, () if intervals is None else (intervals,))
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
    staged = [stage(model, corpus, name, target, training, provenance, scaling, strategy, kind, license)
              for target in targets for kind in kinds]
    if interval:
        staged += [stage_intervals(interval, corpus, name, target, training, provenance, scaling, strategy, kind,
                                   license)
                   for target in targets for kind in kinds]
    notices = signature_notices(registry_before, {s.name: sha256_bytes(s.onnx) for s in staged})
    exports = write_exports(out, staged)
    return FitReport(
        corpus=str(corpus_path), rows_used=len(corpus), rows_dropped=corpus.dropped, prior=choice.model,
        rows_other_vmaf_model=choice.others, fit_seconds=seconds, in_sample=in_sample, cross_validated=cross,
        exports=[{"target": e.target, "onnx": str(e.onnx_path), "sidecar": str(e.sidecar_path),
                  "parity_max_abs_diff": e.parity.max_abs_diff, "rows_checked": e.parity.rows,
                  "threshold_rows": e.parity.threshold_rows} for e in exports],
        intervals=None if interval is None else interval_report(interval, corpus),
        notices=notices,
    )
