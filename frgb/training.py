"""Fitting a model on a corpus and choosing its teacher prior."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from frgb.errors import FrgbError
from frgb.loading import Corpus
from frgb.model import FrgbRegressor
from frgb.teacher import BUILTIN_MODELS

DEFAULT_PRIOR = "vmaf_v0.6.1"


@dataclass
class FitOptions:
    """What `frgb fit` (and every fold of `frgb eval --loso`) trains."""

    prior: str = "auto"  # auto (from the corpus's vmaf_model), a built-in name, a model path, or none
    trees: dict = field(default_factory=dict)  # LightGBM overrides of frgb.model.default_trees(prior)
    codec_blind: bool = True
    monotone: bool = False
    seed: int = 0


@dataclass
class PriorChoice:
    model: str | None  # None: no prior
    other_rows: int  # rows scored with a model other than the prior's
    others: dict[str, int]


def choose_prior(corpus: Corpus, prior: str) -> PriorChoice:
    """The teacher for this corpus: `auto` takes the VMAF model most rows were scored with."""
    recorded = Counter(m for m in corpus.vmaf_model.tolist() if m)
    if prior == "none":
        return PriorChoice(None, 0, {})
    if prior == "auto":
        prior = recorded.most_common(1)[0][0] if recorded else DEFAULT_PRIOR
        if prior not in BUILTIN_MODELS:
            raise FrgbError(
                f"most rows were scored with {prior!r}, which frgb does not ship; "
                f"pass --prior with one of {', '.join(BUILTIN_MODELS)}, a model file, or none"
            )
    name = prior.rsplit("/", 1)[-1].removesuffix(".json")
    others = {m: n for m, n in recorded.items() if m != name}
    return PriorChoice(prior, sum(others.values()), others)


def design_matrix(corpus: Corpus) -> np.ndarray:
    """[features | codec] (N, 14), the model's input."""
    return np.hstack([corpus.features, corpus.codec])


def fit_model(corpus: Corpus, options: FitOptions, prior: str | None) -> FrgbRegressor:
    model = FrgbRegressor(prior=prior, trees=options.trees or None, codec_blind=options.codec_blind,
                          monotone=options.monotone, seed=options.seed)
    return model.fit(design_matrix(corpus), corpus.target)


def _display_path(path: Path) -> str:
    """The shipped corpus by its repository path (the same in every checkout); others as given."""
    from frgb.loading import SHIPPED_CORPUS

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


def train(corpus_path: Path, out: Path, name: str, options: FitOptions, targets: list[str],
          input_scaler: Path | None = None, cv: bool = True, strategy: str = "auto",
          argv: list[str] | None = None,
          on_fold: Callable[[int, int, str], None] = lambda i, n, g: None,
          intervals: float | None = None) -> FitReport:
    """Load a corpus, fit, cross-validate by source, export every target after its parity check.

    With `intervals` (a level in (0, 1)), also fit the interval model around the same point model
    (frgb.intervals) and export its graph for every target."""
    from frgb.evaluation import out_of_fold, summarise
    from frgb.export.package import export, export_intervals
    from frgb.intervals import check_level, fit_intervals, interval_report
    from frgb.loading import load_corpus
    from frgb.metrics import scores

    if intervals is not None:
        check_level(intervals)
    corpus = load_corpus(corpus_path)
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
        "targets": list(targets),
        "options": asdict(options),
        "prior": choice.model,
    }
    exports = [
        export(model, corpus, out, name, target, training, provenance, input_scaler, strategy) for target in targets
    ]
    if interval:
        exports += [export_intervals(interval, corpus, out, name, target, training, provenance, input_scaler, strategy)
                    for target in targets]
    return FitReport(
        corpus=str(corpus_path), rows_used=len(corpus), rows_dropped=corpus.dropped, prior=choice.model,
        rows_other_vmaf_model=choice.others, fit_seconds=seconds, in_sample=in_sample, cross_validated=cross,
        exports=[{"target": e.target, "onnx": str(e.onnx_path), "sidecar": str(e.sidecar_path),
                  "parity_max_abs_diff": e.parity, "rows_checked": e.rows_checked,
                  "threshold_rows": e.threshold_rows} for e in exports],
        intervals=None if interval is None else interval_report(interval, corpus),
    )
