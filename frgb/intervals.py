"""Prediction intervals: conformalized quantile regression on the teacher's residual, calibrated
by source.

    score  = the point model (frgb.model.FrgbRegressor), unchanged
    lo, hi = clip(prior + LightGBM quantile trees at a/2 and 1 - a/2, 0, 100)      (a = 1 - level)
    lower  = min(clip(lo - margin, 0, 100), score)
    upper  = max(clip(hi + margin, 0, 100), score)

The quantile trees fit the residual of the teacher prior, as the point model does, on the same
rows (codec-blind copies included). `margin` is the conformal correction of conformalized
quantile regression (Romano, Patterson and Candes, 2019): with conformity scores
E_i = max(lo(x_i) - y_i, y_i - hi(x_i)), it is the ceil((n + 1) * level)-th smallest of n scores.

Calibration is cross-conformal by source: for each source, quantile models fitted on the other
sources score that source's rows. Every row calibrates, and each score comes from models that
never saw the row's source, which is how a new source meets the exported models. (The exported
bounds are the models fitted on every row, corrected by that margin: the jackknife form, whose
coverage is measured by `frgb eval --intervals`, leave-one-source-out, rather than proven.)

`calibrate_by="encoder"` learns one margin per slot of the codec one-hot (Mondrian conformal),
so that every encoder, not only the pool, gets its coverage. Two groups reach the `unknown`
slot: rows of encoders outside the vocabulary, and the codec-blind copy of every row; each is
calibrated on its own and the slot takes the larger margin. A slot with too few calibration
rows takes the pooled margin. In the graph the margin of a row is `codec @ margin_weights_`,
exactly as here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone

from frgb.contract import CODEC_BLOCK_LAYOUT, ENCODER_VOCAB, SCORE_RANGE
from frgb.errors import FrgbError
from frgb.evaluation import blind_matrix, source_folds
from frgb.loading import Corpus
from frgb.model import N_FEATURES, FrgbRegressor
from frgb.training import FitOptions, design_matrix

#: Recorded in the sidecar as the interval method.
METHOD = "conformalized quantile regression (LightGBM quantile trees on the teacher residual), " \
         "cross-conformal by source"
#: LightGBM settings of the quantile trees (their own: the point model's are tuned for RMSE).
#: Chosen by leave-one-source-out on the shipped corpus at 0.95 (reports/intervals.md): with the
#: point model's settings (50 trees, learning rate 0.02, 8 leaves, 120 rows a leaf) the mean width
#: was 1.54 VMAF; with these 1.19 at the same coverage (0.95); 400 trees, learning rate 0.1,
#: 31 leaves or 40 rows a leaf gave 1.15 to 1.22 with no better coverage. One thread: many small
#: fold fits, and on a busy 2-core machine a fit took 0.16 s single-threaded against 0.6 to 138 s
#: with OpenMP's default threads (same model: deterministic, row-wise).
QUANTILE_TREES = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 20,
                  "reg_lambda": 1.0, "n_jobs": 1}
CALIBRATE_BY = ("encoder", "pooled")
UNKNOWN_SLOT = ENCODER_VOCAB.index("unknown")
#: Calibration group of the codec-blind copies of the rows (they reach the `unknown` slot).
CODEC_BLIND_GROUP = "codec-blind"


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) * level)-th smallest score: the split-conformal margin at `level`."""
    n = len(scores)
    k = math.ceil((n + 1) * level - 1e-9)
    if k > n:
        raise FrgbError(f"{n} calibration rows cannot calibrate a {level:g} interval "
                        f"(at least {math.ceil(level / (1 - level) - 1e-9)} are needed): lower the level or add rows")
    return float(np.sort(scores)[k - 1])


def check_level(level: float) -> float:
    if not 0 < level < 1:
        raise FrgbError(f"interval level must be between 0 and 1 (exclusive), got {level:g}; e.g. 0.95")
    return float(level)


class IntervalRegressor(RegressorMixin, BaseEstimator):
    """Point model plus a conformalized quantile interval on [features | codec] (N, 14).

    level: the coverage the interval aims at (0.95: 95 % of rows of a new source inside).
    prior, trees, codec_blind, monotone, seed: as for `FrgbRegressor` (the point model); the
        quantile models share all but `trees`: theirs are `QUANTILE_TREES` updated with
        `quantile_trees`.
    calibrate_by: "encoder" (one margin per codec one-hot slot) or "pooled" (one margin).
    """

    def __init__(self, level: float = 0.95, prior: str | None = "vmaf_v0.6.1", trees: dict | None = None,
                 quantile_trees: dict | None = None, codec_blind: bool = True, monotone: bool = False,
                 seed: int = 0, calibrate_by: str = "encoder"):
        self.level = level
        self.prior = prior
        self.trees = trees
        self.quantile_trees = quantile_trees
        self.codec_blind = codec_blind
        self.monotone = monotone
        self.seed = seed
        self.calibrate_by = calibrate_by

    @property
    def alphas(self) -> tuple[float, float]:
        """The quantiles the lower and upper trees fit."""
        a = 1 - self.level
        return a / 2, 1 - a / 2

    def _model(self, trees: dict | None) -> FrgbRegressor:
        return FrgbRegressor(prior=self.prior, trees=trees, codec_blind=self.codec_blind, monotone=self.monotone,
                             seed=self.seed)

    def _quantiles(self) -> list[FrgbRegressor]:
        base = {**QUANTILE_TREES, **(self.quantile_trees or {}), "objective": "quantile"}
        return [self._model({**base, "alpha": alpha}) for alpha in self.alphas]

    def fit(self, X, y, groups):
        """Fit the point and quantile models on every row, and the margins on scores out of fold by
        `groups` (the source of each row)."""
        check_level(self.level)
        if self.calibrate_by not in CALIBRATE_BY:
            raise FrgbError(f"calibrate_by must be one of {', '.join(CALIBRATE_BY)}, got {self.calibrate_by!r}")
        X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups)
        if not len(X) == len(y) == len(groups):
            raise FrgbError(f"X, y and groups have {len(X)}, {len(y)} and {len(groups)} rows; they must match")
        sources = sorted(set(groups.tolist()))
        if len(sources) < 2:
            raise FrgbError("interval calibration is by source: the corpus needs at least two sources")
        self.point_ = self._model(self.trees).fit(X, y)
        self.lower_, self.upper_ = (m.fit(X, y) for m in self._quantiles())
        real, blind = [], []  # conformity scores of each row with its codec block, and codec-blind
        for g in sources:
            held = groups == g
            lower, upper = (clone(m).fit(X[~held], y[~held]) for m in (self.lower_, self.upper_))
            for scores, rows in ((real, X[held]), (blind, blind_matrix(X[held]))):
                scores.append(np.maximum(lower.predict(rows) - y[held], y[held] - upper.predict(rows)))
        order = np.concatenate([np.flatnonzero(groups == g) for g in sources])
        slots = np.argmax(X[order, N_FEATURES:N_FEATURES + len(ENCODER_VOCAB)], axis=1)
        self._set_margins(np.concatenate(real), slots, np.concatenate(blind), len(sources))
        self.n_features_in_ = X.shape[1]
        return self

    def _set_margins(self, real: np.ndarray, slots: np.ndarray, blind: np.ndarray, n_sources: int) -> None:
        """Margins from out-of-fold conformity scores: `real` (with each row's codec block, whose
        one-hot slot is `slots`) and `blind` (the same rows with the codec-blind block)."""
        pooled = conformal_quantile(real, self.level)
        groups = {name: real[slots == slot] for slot, name in enumerate(ENCODER_VOCAB)}
        if self.codec_blind:
            groups[CODEC_BLIND_GROUP] = blind
        group_margins = {}
        for name, scores in groups.items():
            try:
                group_margins[name] = conformal_quantile(scores, self.level)
            except FrgbError:  # too few rows: this group does not set a margin of its own
                group_margins[name] = None
        margins = np.full(len(ENCODER_VOCAB), pooled)
        if self.calibrate_by == "encoder":
            for slot, name in enumerate(ENCODER_VOCAB):
                # The unknown slot serves out-of-vocabulary encoders and codec-blind callers alike:
                # its margin is the larger of the two, so that each group keeps its coverage.
                own = [group_margins[name]] + ([group_margins.get(CODEC_BLIND_GROUP)] if slot == UNKNOWN_SLOT else [])
                own = [m for m in own if m is not None]
                if own:
                    margins[slot] = max(own)
        self.margins_ = margins
        #: The margin of a row is codec @ margin_weights_ (zero weight on preset_norm, crf_norm).
        self.margin_weights_ = np.concatenate([margins, np.zeros(len(CODEC_BLOCK_LAYOUT) - len(margins))])
        self.calibration_ = {
            "scheme": "cross-conformal, leave-one-source-out",
            "sources": n_sources,
            "rows": len(real),
            "pooled_margin": pooled,
            "margins": dict(zip(ENCODER_VOCAB, margins.tolist())),
            "groups": {name: {"rows": len(groups[name]), "margin": group_margins[name]} for name in groups},
            "conformity_score_quantiles": {str(q): float(np.quantile(real, q)) for q in (0.5, 0.9, 0.99)},
        }

    def predict(self, X) -> np.ndarray:
        """The point score (the same as the point model's)."""
        return self.point_.predict(X)

    def predict_interval(self, X, pooled: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, lower, upper), each (N,), with lower <= score <= upper on every row.

        pooled: use the one pooled margin instead of the fitted ones (to compare calibrations on
            the same fits; what the graph computes is `pooled=False`)."""
        X = np.asarray(X, dtype=np.float64)
        score = self.point_.predict(X)
        if pooled:
            margin = np.full(len(X), self.calibration_["pooled_margin"])
        else:
            margin = X[:, N_FEATURES:] @ self.margin_weights_
        lower = np.minimum(np.clip(self.lower_.predict(X) - margin, *SCORE_RANGE), score)
        upper = np.maximum(np.clip(self.upper_.predict(X) + margin, *SCORE_RANGE), score)
        return score, lower, upper


def fit_intervals(corpus: Corpus, options: FitOptions, prior: str | None, level: float,
                  calibrate_by: str = "encoder") -> IntervalRegressor:
    """What `frgb fit --intervals LEVEL` trains (its point model is what `frgb fit` trains)."""
    model = IntervalRegressor(level=level, prior=prior, trees=options.trees or None, codec_blind=options.codec_blind,
                              monotone=options.monotone, seed=options.seed, calibrate_by=calibrate_by)
    return model.fit(design_matrix(corpus), corpus.target, corpus.group)


def interval_report(model: IntervalRegressor, corpus: Corpus) -> dict:
    """What `frgb fit --intervals` says about the interval model it fitted on `corpus`."""
    _, lower, upper = model.predict_interval(design_matrix(corpus))
    return {"level": model.level, "method": METHOD, "calibrate_by": model.calibrate_by,
            "calibration": model.calibration_, "in_sample": interval_figures(lower, upper, corpus.target)}


# Measuring intervals.

def interval_figures(lower: np.ndarray, upper: np.ndarray, target: np.ndarray) -> dict:
    """Empirical coverage (share of rows with lower <= target <= upper), mean and median width."""
    inside = (target >= lower) & (target <= upper)
    width = upper - lower
    n = len(target)
    return {
        "coverage": float(inside.mean()) if n else float("nan"),
        "mean_width": float(width.mean()) if n else float("nan"),
        "median_width": float(np.median(width)) if n else float("nan"),
        "n": n,
    }


def interval_summary(lower: np.ndarray, upper: np.ndarray, corpus: Corpus) -> dict:
    """`interval_figures` for all rows, per encoder and per source."""
    def by(keys):
        return {str(k): interval_figures(lower[keys == k], upper[keys == k], corpus.target[keys == k])
                for k in sorted(set(keys.tolist()))}

    return {**interval_figures(lower, upper, corpus.target), "per_encoder": by(corpus.encoder),
            "per_source": by(corpus.source)}


@dataclass
class IntervalPredictions:
    """Held-out (score, lower, upper) of every row; the bounds also with the codec-blind block,
    and with the one pooled margin instead of the fitted ones."""

    score: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    blind_lower: np.ndarray
    blind_upper: np.ndarray
    pooled_lower: np.ndarray
    pooled_upper: np.ndarray


def out_of_fold_intervals(corpus: Corpus, fit, on_fold=lambda i, n, g: None) -> IntervalPredictions:
    """Leave-one-source-out: for each source, fit (and calibrate) on the others and predict it."""
    X = design_matrix(corpus)
    out = [np.empty(len(corpus)) for _ in range(7)]
    for held in source_folds(corpus, on_fold):
        model = fit(corpus.subset(~held))
        values = (*model.predict_interval(X[held]), *model.predict_interval(blind_matrix(X[held]))[1:],
                  *model.predict_interval(X[held], pooled=True)[1:])
        for array, value in zip(out, values):
            array[held] = value
    return IntervalPredictions(*out)


def evaluate_loso(corpus: Corpus, options: FitOptions, prior: str | None, levels: list[float],
                  calibrate_by: str = "encoder", on_fold=lambda i, n, g: None) -> dict:
    """Leave-one-source-out coverage and width at each level, beside the point model's RMSE."""
    from frgb.metrics import by_group, scores

    result = {"corpus": corpus.path, "corpus_sha256": corpus.sha256, "rows_used": len(corpus),
              "sources": len(set(corpus.group.tolist())), "prior": prior, "method": METHOD,
              "calibrate_by": calibrate_by, "levels": {}}
    for level in map(check_level, levels):
        pred = out_of_fold_intervals(
            corpus, lambda part: fit_intervals(part, options, prior, level, calibrate_by), on_fold)
        per_source = by_group(pred.score, corpus.target, corpus.source)
        result["point_loso"] = {
            "pooled": scores(pred.score, corpus.target),
            "mean_rmse_over_sources": float(np.mean([m["rmse"] for m in per_source.values()])),
            "per_encoder": by_group(pred.score, corpus.target, corpus.encoder),
            "per_source": per_source,
        }
        result["levels"][f"{level:g}"] = {
            **interval_summary(pred.lower, pred.upper, corpus),
            "codec_blind": interval_figures(pred.blind_lower, pred.blind_upper, corpus.target),
            "one_pooled_margin": interval_summary(pred.pooled_lower, pred.pooled_upper, corpus),
        }
    return result


def _settings(trees: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in trees.items() if k != "n_jobs")


def report_markdown(result: dict, command: str) -> str:
    """reports/intervals.md from `evaluate_loso`'s result."""
    levels = result["levels"]
    top = max(levels, key=float)
    corpus = Path(result["corpus"]).resolve()
    if corpus.is_relative_to(Path.cwd()):
        corpus = corpus.relative_to(Path.cwd())
    point = result["point_loso"]

    def table(header: list[str], rows: list[list]) -> list[str]:
        return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
                *("| " + " | ".join(str(v) for v in row) + " |" for row in rows)]

    def lowest(summary: dict) -> str:
        enc, fig = min(summary["per_encoder"].items(), key=lambda kv: kv[1]["coverage"])
        return f"{fig['coverage']:.3f} ({enc})"

    summary = table(
        ["level", "coverage", "mean width", "median width", "lowest encoder", "codec-blind coverage",
         "codec-blind mean width", "one pooled margin: coverage", "lowest encoder", "mean width"],
        [[f"{float(L):g}", f"{v['coverage']:.3f}", f"{v['mean_width']:.3f}", f"{v['median_width']:.3f}", lowest(v),
          f"{v['codec_blind']['coverage']:.3f}", f"{v['codec_blind']['mean_width']:.3f}",
          f"{v['one_pooled_margin']['coverage']:.3f}", lowest(v["one_pooled_margin"]),
          f"{v['one_pooled_margin']['mean_width']:.3f}"] for L, v in levels.items()],
    )
    encoders = sorted(levels[top]["per_encoder"])
    per_encoder = table(
        ["encoder", "rows", *(f"coverage {float(L):g}" for L in levels), f"mean width {top}", "point RMSE"],
        [[e, levels[top]["per_encoder"][e]["n"], *(f"{v['per_encoder'][e]['coverage']:.3f}" for v in levels.values()),
          f"{levels[top]['per_encoder'][e]['mean_width']:.3f}", f"{point['per_encoder'][e]['rmse']:.3f}"]
         for e in encoders],
    )
    per_source = table(
        ["source", "rows", f"coverage {top}", f"mean width {top}", "point RMSE"],
        [[s, f["n"], f"{f['coverage']:.3f}", f"{f['mean_width']:.3f}", f"{point['per_source'][s]['rmse']:.3f}"]
         for s, f in levels[top]["per_source"].items()],
    )
    lines = [
        "# Prediction intervals",
        "",
        f"Leave-one-source-out on `{corpus}` ({result['rows_used']} rows, {result['sources']} sources, "
        f"SHA-256 `{result['corpus_sha256'][:16]}…`), teacher prior `{result['prior']}`. For each source, the "
        "interval model is fitted and calibrated on the other sources only (its calibration is itself "
        "cross-conformal over those sources), then that source's rows are predicted. Coverage is the share of "
        "held-out rows with lower <= vmaf_score <= upper; width is upper - lower in VMAF points.",
        "",
        f"Reproduce with `{command}` (about three minutes on an idle two-core machine).",
        "",
        f"**At {top}: coverage {levels[top]['coverage']:.3f}, mean width {levels[top]['mean_width']:.3f} VMAF, "
        f"lowest per-encoder coverage {lowest(levels[top])}. The point model beside it: LOSO RMSE "
        f"{point['pooled']['rmse']:.3f} pooled, {point['mean_rmse_over_sources']:.3f} mean over sources.**",
        "",
        "## Coverage and width at each level",
        "",
        *summary,
        "",
        f"The columns on the right recompute the same held-out folds with one margin for all rows instead of "
        f"one per encoder slot (calibrate_by = `{result['calibrate_by']}` is what frgb fits and exports).",
        "",
        "## Per encoder",
        "",
        *per_encoder,
        "",
        f"## Per source, at {top}",
        "",
        *per_source,
        "",
        "## Method",
        "",
        "- Point score: the model `frgb fit` exports (teacher prior + LightGBM on its residual), unchanged.",
        "- Bounds: two LightGBM quantile models (alpha = (1 - level) / 2 and 1 - (1 - level) / 2) on the same "
        "residual, same rows (codec-blind copies included), then the conformal margin of conformalized quantile "
        "regression (Romano et al., 2019): lower = lo - margin, upper = hi + margin, clipped to [0, 100] and "
        "widened to contain the score (lower <= score <= upper on every row, in the graph with Min/Max).",
        f"- Quantile trees: their own LightGBM settings ({_settings(QUANTILE_TREES)}), not the point "
        "model's (tuned for RMSE): on this corpus they gave intervals about a quarter narrower at the same "
        "coverage (see `QUANTILE_TREES` in frgb/intervals.py for the settings compared).",
        "- Calibration: cross-conformal by source. Every row's conformity score max(lo - y, y - hi) comes from "
        "quantile models fitted without the row's source; the margin is the ceil((n + 1) level)-th smallest "
        "score. One margin per codec one-hot slot (Mondrian by encoder); the `unknown` slot takes the larger of "
        "the margins of out-of-vocabulary encoders (e.g. libaom-av1) and of the codec-blind copies, which both "
        "reach it. In the graph a row's margin is `codec @ margins`.",
        "- Why this way: one extra model family (LightGBM) instead of an ensemble, no new dependency, exact "
        "export with the point graph's parts; calibrating on other sources is what makes coverage hold on a "
        "new source, since rows of one source share their errors.",
        "- What is guaranteed and what is measured: conformal coverage is guaranteed for exchangeable rows. "
        "Sources are not exchangeable rows: a source that the others do not resemble gets less coverage "
        "(per-source table), and the figures above are measured, not proven.",
    ]
    return "\n".join(lines) + "\n"
