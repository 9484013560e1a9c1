"""Leave-one-source-out comparison of frgb, its parts, and the MLP baseline on the same folds.

Each contender is a recipe that trains on a corpus and returns something with `predict(X)` on
[features | codec]. `compare` runs every contender through `cv.out_of_fold`, so
all of them see exactly the same folds: one per source (`src_sha256`, else `src`), each source
predicted by a model that was trained on the other sources only.

The standard contenders:
    frgb    the teacher prior + residual trees, as `frgb fit` trains it
    trees   the same trees fitted on the score itself (prior=None)
    prior   the teacher alone, no training (`VmafTeacher().fit().predict(features)`)
    mlp     the fr_regressor_v2-shaped MLP baseline (frgb.baseline)
and, for the report, `prior+mlp` (the prior with the MLP on its residual) and the monotone flips.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from frgb.baseline import MAX_ITER, MlpBaseline
from frgb.contract import FEATURES, N_FEATURES
from frgb.cv import OnFold, Predictions, out_of_fold, summarise
from frgb.loading import Corpus, design_matrix
from frgb.model import MONOTONE_FEATURES, FrgbRegressor
from frgb.teacher import VmafTeacher
from frgb.training import FitOptions, choose_prior, fit_model

METRICS = ("plcc", "srocc", "rmse")
#: For each metric, whether a larger value is better.
HIGHER_IS_BETTER = {"plcc": True, "srocc": True, "rmse": False}


@dataclass(frozen=True)
class Contender:
    """A named way of training a predictor on the rows of a corpus."""

    name: str
    description: str
    fit: Callable[[Corpus], object]
    log: list = field(default_factory=list)  # facts a fit records, one per fold (e.g. MLP epochs)


class PriorAlone:
    """The teacher prior as a predictor on [features | codec]: nothing is learned from the corpus."""

    def __init__(self, model: str):
        self.teacher = VmafTeacher(model=model).fit()

    def predict(self, X) -> np.ndarray:
        return self.teacher.predict(np.asarray(X)[:, :N_FEATURES])


def frgb_contender(name: str, options: FitOptions, prior: str | None) -> Contender:
    what = f"prior {prior} + residual trees" if prior else "LightGBM on the score (no prior)"
    if options.trees:
        what += f", settings {options.trees}"
    elif not prior:
        what += ", PLAIN_TREES (frgb tune --prior none)"
    if options.monotone:
        what += ", monotone constraints"
    return Contender(name, what, lambda part: fit_model(part, options, prior))


def prior_contender(prior: str) -> Contender:
    return Contender("prior", f"teacher prior {prior} alone (no training)", lambda part: PriorAlone(prior))


def mlp_contender(options: FitOptions, max_iter: int = MAX_ITER, prior: str | None = None) -> Contender:
    """The MLP baseline; with `prior`, the second baseline: the prior + the MLP on its residual."""
    epochs: list[int] = []

    def fit(part: Corpus) -> MlpBaseline:
        model = MlpBaseline(codec_blind=options.codec_blind, max_iter=max_iter, random_state=options.seed, prior=prior)
        model.fit(design_matrix(part), part.target)
        epochs.append(model.n_iter_)
        return model

    if prior:
        return Contender("prior+mlp", f"prior {prior} + the MLP on the residual (second baseline)", fit, epochs)
    return Contender("mlp", "MLP baseline (fr_regressor_v2 shape, frgb.baseline)", fit, epochs)


def standard_contenders(options: FitOptions, prior: str | None, mlp_max_iter: int = MAX_ITER) -> list[Contender]:
    """frgb as configured; without a prior; the prior alone; the MLP (the last three only where
    they differ from frgb)."""
    out = [frgb_contender("frgb", options, prior)]
    if prior:
        out += [frgb_contender("trees", options, None), prior_contender(prior)]
    return out + [mlp_contender(options, mlp_max_iter)]


def residual_mlp_contenders(options: FitOptions, prior: str | None, mlp_max_iter: int = MAX_ITER) -> list[Contender]:
    """The second baseline (prior + MLP on the residual), where there is a prior."""
    return [mlp_contender(options, mlp_max_iter, prior)] if prior else []


def monotone_flip(name: str, options: FitOptions, prior: str | None) -> Contender:
    """Contender `name` with the monotone setting flipped: the other arm of the experiment."""
    flipped = replace(options, monotone=not options.monotone)
    return frgb_contender(f"{name} {'monotone' if flipped.monotone else 'unconstrained'}", flipped, prior)


@dataclass
class Comparison:
    """Out-of-fold predictions of every contender on one corpus."""

    corpus: Corpus
    descriptions: dict[str, str]
    predictions: dict[str, Predictions]
    seconds: dict[str, float]
    logs: dict[str, list] = field(default_factory=dict)  # per contender: what its fits recorded, by fold
    _summaries: dict = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return list(self.predictions)

    @property
    def folds(self) -> list[str]:
        """The held-out sources, in the order of `summary(name)["per_source"]`."""
        return sorted(set(self.corpus.source.tolist()))

    def summary(self, name: str) -> dict:
        """`cv.summarise` of one contender (pooled, mean over sources, per source, ...)."""
        if name not in self._summaries:
            self._summaries[name] = summarise(self.predictions[name], self.corpus)
        return self._summaries[name]

    def residual(self, name: str) -> np.ndarray:
        """Predicted minus measured VMAF, per row."""
        return self.predictions[name].score - self.corpus.target

    def wins(self, a: str, b: str, metric: str = "rmse") -> dict[str, int]:
        """Folds where `a` beats `b` on `metric`, where it loses, and ties (equal to 4 decimals)."""
        sign = 1 if HIGHER_IS_BETTER[metric] else -1
        fa, fb = self.summary(a)["per_source"], self.summary(b)["per_source"]
        diff = np.array([sign * (fa[s][metric] - fb[s][metric]) for s in fa])
        diff = np.where(np.abs(diff) < 5e-5, 0.0, diff)
        return {"wins": int((diff > 0).sum()), "losses": int((diff < 0).sum()), "ties": int((diff == 0).sum())}

    def to_dict(self, versus: tuple[str, str] | None = None) -> dict:
        """Everything as plain JSON-able values."""
        out = {
            "corpus": self.corpus.path,
            "corpus_sha256": self.corpus.sha256,
            "rows_used": len(self.corpus),
            "rows_dropped": self.corpus.dropped,
            "scheme": "leave-one-source-out",
            "folds": self.folds,
            "contenders": {
                n: {"description": self.descriptions[n], "fit_seconds": self.seconds[n],
                    **({"per_fold_log": self.logs[n]} if self.logs.get(n) else {}), **self.summary(n)}
                for n in self.names
            },
        }
        if versus:
            out["versus"] = {"a": versus[0], "b": versus[1],
                             **{m: self.wins(*versus, metric=m) for m in METRICS}}
        return out


def compare(corpus: Corpus, contenders: list[Contender], on_fold: OnFold | None = None) -> Comparison:
    """Train and predict every contender on every leave-one-source-out fold.

    `on_fold(i, n, note)` is called before each of the n fold fits (i = 0..n-1, counted over all
    contenders) and once more with i = n when everything is done."""
    n_folds = len(set(corpus.group.tolist()))
    total = n_folds * len(contenders)
    on_fold = on_fold or (lambda i, n, note: None)
    predictions, seconds = {}, {}
    for k, contender in enumerate(contenders):
        def hook(i: int, n: int, source: str, k=k, name=contender.name) -> None:
            on_fold(k * n_folds + i, total, f"{name}: {source}")

        started = time.perf_counter()
        predictions[contender.name] = out_of_fold(corpus, contender.fit, hook)
        seconds[contender.name] = time.perf_counter() - started
    on_fold(total, total, "done")
    return Comparison(corpus, {c.name: c.description for c in contenders}, predictions, seconds,
                      {c.name: list(c.log) for c in contenders})


def loso(corpus: Corpus, options: FitOptions, baseline: bool = True, mlp_max_iter: int = MAX_ITER,
         on_fold: OnFold | None = None) -> Comparison:
    """`frgb eval --loso`: frgb as `frgb fit` trains it, its parts, and (with `baseline`) the MLP."""
    prior = choose_prior(corpus, options.prior).model
    contenders = standard_contenders(options, prior, mlp_max_iter)
    if not baseline:
        contenders = [c for c in contenders if c.name != "mlp"]
    return compare(corpus, contenders, on_fold)


def _cells(m: dict) -> list[str]:
    return [f"{m['plcc']:.4f}", f"{m['srocc']:.4f}", f"{m['rmse']:.3f}"]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; the first left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def loso_text(result: Comparison, versus: tuple[str, str] = ("frgb", "mlp")) -> str:
    """The per-fold table of two contenders, then every contender's summary, per encoder and blind."""
    a, b = versus if all(v in result.predictions for v in versus) else (result.names[0], None)
    header = ["held-out source", "n"] + [f"{name} {m}" for name in (a, b) if name for m in ("PLCC", "SROCC", "RMSE")]
    header += ["lower RMSE"] if b else []
    rows = []
    fa = result.summary(a)["per_source"]
    fb = result.summary(b)["per_source"] if b else {}
    for source, m in fa.items():
        row = [source, str(m["n"]), *_cells(m)]
        if b:
            row += [*_cells(fb[source]), a if m["rmse"] < fb[source]["rmse"] else b]
        rows.append(row)
    parts = [f"leave-one-source-out on {result.corpus.path}: {len(result.corpus)} rows, {len(fa)} folds", "",
             text_table(header, rows), ""]
    summary_rows = []
    for name in result.names:
        s = result.summary(name)
        summary_rows.append([name, *_cells(s["mean_over_sources"]), f"{s['pooled']['plcc']:.4f}",
                             f"{s['pooled']['rmse']:.3f}", f"{s['codec_blind']['mean_over_sources']['rmse']:.3f}",
                             result.descriptions[name]])
    parts += [text_table(["model", "mean PLCC", "mean SROCC", "mean RMSE", "pooled PLCC", "pooled RMSE",
                          "blind RMSE", "what"], summary_rows), ""]
    encoders = list(result.summary(a)["per_encoder"])
    enc_rows = [[e, str(result.summary(a)["per_encoder"][e]["n"])]
                + [f"{result.summary(n)['per_encoder'][e][k]:.{3 if k == 'rmse' else 4}f}"
                   for n in result.names for k in ("plcc", "rmse")] for e in encoders]
    parts += [text_table(["encoder (pooled)", "n"] + [f"{n} {k}" for n in result.names for k in ("PLCC", "RMSE")],
                         enc_rows)]
    if b:
        w = {m: result.wins(a, b, m) for m in METRICS}
        parts += ["", f"{a} vs {b} per fold: " + "; ".join(
            f"{m.upper()} {w[m]['wins']} won, {w[m]['losses']} lost, {w[m]['ties']} tied" for m in METRICS)]
    return "\n".join(parts)


# Measurements the evaluation report draws and tabulates.

#: Edges of the VMAF bands in the error-against-range figure and table.
VMAF_BANDS = (0, 20, 40, 60, 70, 80, 90, 95, 100)
#: Step (in feature standard deviations) of the monotonicity probe.
PROBE_STEP = 0.05


def band_rmse(result: Comparison, name: str) -> list[tuple[str, int, float]]:
    """(band label, rows, RMSE) of one model in each VMAF band of the measured score."""
    target, residual = result.corpus.target, result.residual(name)
    out = []
    for low, high in zip(VMAF_BANDS[:-1], VMAF_BANDS[1:]):
        rows = (target >= low) & ((target < high) if high < VMAF_BANDS[-1] else (target <= high))
        rmse = float(np.sqrt(np.mean(residual[rows] ** 2))) if rows.any() else float("nan")
        out.append((f"{low}-{high}", int(rows.sum()), rmse))
    return out


def importance(model: FrgbRegressor, corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Total gain per input and mean |SHAP contribution| per input (LightGBM pred_contrib) of the
    model's trees over the corpus rows (with a prior, of the residual trees)."""
    gain = model.booster_.feature_importance(importance_type="gain")
    return gain, np.abs(model.contributions(design_matrix(corpus))).mean(axis=0)


def monotonicity_violations(predict: Callable[[np.ndarray], np.ndarray], corpus: Corpus) -> dict[str, float]:
    """For each constrained feature, the share of rows where raising it by PROBE_STEP of its
    standard deviation lowers the prediction by more than 0.01 VMAF (all else equal)."""
    X = design_matrix(corpus)
    base = predict(X)
    constrained = [i for i, d in enumerate(MONOTONE_FEATURES[:N_FEATURES]) if d > 0 and FEATURES[i] != "motion2"]
    falls = {}
    for i in constrained:
        up = X.copy()
        up[:, i] += PROBE_STEP * corpus.features[:, i].std()
        falls[FEATURES[i]] = float(np.mean(predict(up) < base - 0.01))
    return falls
