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
so that every encoder, not only the pool, gets its coverage; the `unknown` slot is calibrated on
the rows of encoders outside the vocabulary and on the codec-blind copy of every row, which is
what reaches that slot. A slot with too few calibration rows takes the pooled margin. In the
graph the margin of a row is `codec @ margin_weights_`, exactly as here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
#: LightGBM settings of the quantile trees on top of the point model's. One thread: measured on
#: the shared 2-core machine, a fold fit took 0.16 s single-threaded against 0.6 to 138 s with
#: OpenMP's default thread count (same model: deterministic, row-wise).
QUANTILE_TREES = {"n_jobs": 1}
CALIBRATE_BY = ("encoder", "pooled")
UNKNOWN_SLOT = ENCODER_VOCAB.index("unknown")


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
        quantile models use the same, plus `QUANTILE_TREES` and `quantile_trees`.
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
        base = {**(self.trees or {}), **QUANTILE_TREES, **(self.quantile_trees or {}), "objective": "quantile"}
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
        margins, rows, fallback = np.full(len(ENCODER_VOCAB), pooled), {}, []
        if self.calibrate_by == "encoder":
            for slot, name in enumerate(ENCODER_VOCAB):
                mine = real[slots == slot]
                if slot == UNKNOWN_SLOT and self.codec_blind:
                    mine = np.concatenate([mine, blind])
                rows[name] = len(mine)
                try:
                    margins[slot] = conformal_quantile(mine, self.level)
                except FrgbError:
                    fallback.append(name)
        self.margins_ = margins
        #: The margin of a row is codec @ margin_weights_ (zero weight on preset_norm, crf_norm).
        self.margin_weights_ = np.concatenate([margins, np.zeros(len(CODEC_BLOCK_LAYOUT) - len(margins))])
        self.calibration_ = {
            "scheme": "cross-conformal, leave-one-source-out",
            "sources": n_sources,
            "rows": len(real),
            "pooled_margin": pooled,
            "margins": dict(zip(ENCODER_VOCAB, margins.tolist())),
            "rows_per_slot": rows,
            "slots_on_pooled_margin": fallback,
            "conformity_score_quantiles": {str(q): float(np.quantile(real, q)) for q in (0.5, 0.9, 0.99)},
        }

    def predict(self, X) -> np.ndarray:
        """The point score (the same as the point model's)."""
        return self.point_.predict(X)

    def predict_interval(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, lower, upper), each (N,), with lower <= score <= upper on every row."""
        X = np.asarray(X, dtype=np.float64)
        score = self.point_.predict(X)
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
    """Held-out (score, lower, upper) of every row, with its codec block and with the blind one."""

    score: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    blind_lower: np.ndarray
    blind_upper: np.ndarray


def out_of_fold_intervals(corpus: Corpus, fit, on_fold=lambda i, n, g: None) -> IntervalPredictions:
    """Leave-one-source-out: for each source, fit (and calibrate) on the others and predict it."""
    X = design_matrix(corpus)
    out = [np.empty(len(corpus)) for _ in range(5)]
    for held in source_folds(corpus, on_fold):
        model = fit(corpus.subset(~held))
        for array, value in zip(out, (*model.predict_interval(X[held]),
                                      *model.predict_interval(blind_matrix(X[held]))[1:])):
            array[held] = value
    return IntervalPredictions(*out)


def evaluate_loso(corpus: Corpus, options: FitOptions, prior: str | None, levels: list[float],
                  calibrate_by: str = "encoder", on_fold=lambda i, n, g: None) -> dict:
    """Leave-one-source-out coverage and width at each level, beside the point model's RMSE."""
    from frgb.metrics import scores

    result = {"corpus": corpus.path, "rows_used": len(corpus), "sources": len(set(corpus.group.tolist())),
              "method": METHOD, "calibrate_by": calibrate_by, "levels": {}}
    for level in map(check_level, levels):
        pred = out_of_fold_intervals(
            corpus, lambda part: fit_intervals(part, options, prior, level, calibrate_by), on_fold)
        result["point_loso"] = scores(pred.score, corpus.target)
        result["levels"][f"{level:g}"] = {
            **interval_summary(pred.lower, pred.upper, corpus),
            "codec_blind": interval_figures(pred.blind_lower, pred.blind_upper, corpus.target),
        }
    return result
