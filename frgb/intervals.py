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

With the codec guard (frgb.contract.guard_codec; the fork-v2 layout's default) every block
without a trained encoder slot is scored as the codec-blind vector, so `unknown`, the slots no
training row had and an all-zeros block share one margin: the widest margin of the trained
slots, since an encoder never seen may behave like any of them. (The widest of the margins that
each encoder's codec-blind scores would need is wider still, 1.02 against 0.53 on the shipped
corpus, and covers 0.987 of codec-blind rows against a 0.95 level: reports/codec-vectors.md.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from frgb.contract import CARD, N_FEATURES, SCORE_RANGE, layout_named, with_codec_blind
from frgb.cv import OnFold, corpus_folds, source_folds
from frgb.errors import FrgbError
from frgb.loading import Corpus, design_matrix
from frgb.metrics import by_group, interval_figures, interval_summary, scores
from frgb.model import FrgbRegressor, check_inputs
from frgb.teacher import DEFAULT_PRIOR
from frgb.training import FitOptions, calibration_rows_needed

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
#: Calibration group of the codec-blind copies of the rows (they reach the `unknown` slot).
CODEC_BLIND_GROUP = "codec-blind"


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) * level)-th smallest score: the split-conformal margin at `level`."""
    n = len(scores)
    k = math.ceil((n + 1) * level - 1e-9)
    if k > n:
        raise FrgbError(f"{n} calibration rows cannot calibrate a {level:g} interval "
                        f"(at least {calibration_rows_needed(level)} are needed): lower the level or add rows")
    return float(np.sort(scores)[k - 1])


def check_level(level: float) -> float:
    if not 0 < level < 1:
        raise FrgbError(f"interval level must be between 0 and 1 (exclusive), got {level:g}; e.g. 0.95")
    return float(level)


class IntervalRegressor(RegressorMixin, BaseEstimator):
    """Point model plus a conformalized quantile interval on [features | codec].

    Parameters
    ----------
    level : float, default 0.95
        The coverage the interval aims at (0.95: 95 % of rows of a new source inside).
    prior, trees, codec_blind, monotone, random_state :
        As for `FrgbRegressor` (the point model); the quantile models share all but `trees`.
    quantile_trees : dict or None
        LightGBM settings of the quantile models over `QUANTILE_TREES`.
    calibrate_by : {"encoder", "pooled"}, default "encoder"
        One margin per codec one-hot slot, or one margin for all rows.
    layout, codec_guard :
        As for `FrgbRegressor`: the codec layout of X, and whether blocks without a trained
        encoder slot are scored codec-blind (they then take the widest margin of the trained slots).

    Attributes
    ----------
    point_, lower_, upper_ : FrgbRegressor
        The point model and the two quantile models, fitted on every row.
    margins_ : ndarray (len(encoder vocabulary),), the conformal margin of each encoder slot.
    margin_weights_ : ndarray (codec width,), a row's margin is codec @ margin_weights_.
    calibration_ : dict, what the calibration measured (rows, groups, margins).
    n_features_in_ : int
    """

    def __init__(self, *, level: float = 0.95, prior: str | None = DEFAULT_PRIOR, trees: dict | None = None,
                 quantile_trees: dict | None = None, codec_blind: bool = True, monotone: bool = False,
                 random_state: int = 0, calibrate_by: str = "encoder", layout: str = CARD.name,
                 codec_guard: bool | None = None):
        self.level = level
        self.prior = prior
        self.trees = trees
        self.quantile_trees = quantile_trees
        self.codec_blind = codec_blind
        self.monotone = monotone
        self.random_state = random_state
        self.calibrate_by = calibrate_by
        self.layout = layout
        self.codec_guard = codec_guard

    @property
    def alphas(self) -> tuple[float, float]:
        """The quantiles the lower and upper trees fit."""
        a = 1 - self.level
        return a / 2, 1 - a / 2

    def _model(self, trees: dict | None) -> FrgbRegressor:
        return FrgbRegressor(prior=self.prior, trees=trees, codec_blind=self.codec_blind, monotone=self.monotone,
                             random_state=self.random_state, layout=self.layout, codec_guard=self.codec_guard)

    def _quantiles(self) -> list[FrgbRegressor]:
        base = {**QUANTILE_TREES, **(self.quantile_trees or {}), "objective": "quantile"}
        return [self._model({**base, "alpha": alpha}) for alpha in self.alphas]

    def fit(self, X, y, groups):
        """Fit the point and quantile models on every row, and the margins on scores out of fold by
        `groups` (the source of each row)."""
        check_level(self.level)
        if self.calibrate_by not in CALIBRATE_BY:
            raise ValueError(f"calibrate_by must be one of {', '.join(CALIBRATE_BY)}, got {self.calibrate_by!r}")
        vocab = layout_named(self.layout).encoder_vocab
        X, y, groups = check_inputs(X, len(vocab) + 2), np.asarray(y, dtype=np.float64), np.asarray(groups)
        if not len(X) == len(y) == len(groups):
            raise ValueError(f"X, y and groups have {len(X)}, {len(y)} and {len(groups)} rows; they must match")
        if len(np.unique(groups)) < 2:
            raise FrgbError("interval calibration is by source: the corpus needs at least two sources")
        self.point_ = self._model(self.trees).fit(X, y)
        self.lower_, self.upper_ = (m.fit(X, y) for m in self._quantiles())
        real, blind, order = [], [], []  # conformity scores with each row's codec block, and codec-blind
        for held in source_folds(groups):
            lower, upper = (clone(m).fit(X[~held], y[~held]) for m in (self.lower_, self.upper_))
            for conformity, rows in ((real, X[held]), (blind, with_codec_blind(X[held]))):
                conformity.append(np.maximum(lower.predict(rows) - y[held], y[held] - upper.predict(rows)))
            order.append(np.flatnonzero(held))
        order = np.concatenate(order)
        slots = np.argmax(X[order, N_FEATURES:N_FEATURES + len(vocab)], axis=1)
        self._set_margins(np.concatenate(real), slots, np.concatenate(blind), len(np.unique(groups)))
        self.n_features_in_ = X.shape[1]
        return self

    def _set_margins(self, real: np.ndarray, slots: np.ndarray, blind: np.ndarray, n_sources: int) -> None:
        """Margins from out-of-fold conformity scores: `real` (with each row's codec block, whose
        one-hot slot is `slots`) and `blind` (the same rows with the codec-blind block)."""
        layout = self.point_.layout_
        vocab = layout.encoder_vocab
        pooled = conformal_quantile(real, self.level)
        groups = {name: real[slots == slot] for slot, name in enumerate(vocab)}
        if self.codec_blind:
            groups[CODEC_BLIND_GROUP] = blind
        group_margins = {}
        for name, conformity in groups.items():
            try:
                group_margins[name] = conformal_quantile(conformity, self.level)
            except FrgbError:  # too few rows: this group does not set a margin of its own
                group_margins[name] = None
        margins = np.full(len(vocab), pooled)
        if self.calibrate_by == "encoder":
            for slot, name in enumerate(vocab):
                # The unknown slot serves out-of-vocabulary encoders and codec-blind callers alike:
                # its margin is the larger of the two, so that each group keeps its coverage.
                own = [group_margins[name]] + ([group_margins.get(CODEC_BLIND_GROUP)]
                                               if slot == layout.unknown_slot else [])
                own = [m for m in own if m is not None]
                if own:
                    margins[slot] = max(own)
        guard = {}
        if self.point_.guarded:
            trusted = list(self.point_.trusted_slots_)
            widest = float(margins[trusted].max()) if trusted else pooled
            margins[[slot for slot in range(len(vocab)) if slot not in trusted]] = widest
            guard = {"codec_guard": {
                "trusted_slots": [vocab[s] for s in trusted],
                "blind_margin": widest,
                "rule": "every block without a trusted slot is scored as the codec-blind vector and takes the "
                        "widest margin of the trusted slots",
            }}
        self.margins_ = margins
        #: The margin of a row is codec @ margin_weights_ (zero weight on preset_norm, crf_norm).
        self.margin_weights_ = np.concatenate([margins, np.zeros(2)])
        self.calibration_ = {
            "scheme": "cross-conformal, leave-one-source-out",
            "sources": n_sources,
            "rows": len(real),
            "pooled_margin": pooled,
            "margins": dict(zip(vocab, margins.tolist())),
            "groups": {name: {"rows": len(groups[name]), "margin": group_margins[name]} for name in groups},
            "conformity_score_quantiles": {str(q): float(np.quantile(real, q)) for q in (0.5, 0.9, 0.99)},
            **guard,
        }

    def predict(self, X) -> np.ndarray:
        """The point score (the same as the point model's)."""
        check_is_fitted(self)
        return self.point_.predict(X)

    def predict_interval(self, X, pooled: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, lower, upper), each (N,), with lower <= score <= upper on every row.

        pooled: use the one pooled margin instead of the fitted ones (to compare calibrations on
            the same fits; what the graph computes is `pooled=False`)."""
        check_is_fitted(self)
        X = check_inputs(X, len(self.margin_weights_), allow_nan=True)
        score = self.point_.predict(X)
        if pooled:
            margin = np.full(len(X), self.calibration_["pooled_margin"])
        else:
            margin = self.point_.model_inputs(X)[:, N_FEATURES:] @ self.margin_weights_
        lower = np.minimum(np.clip(self.lower_.predict(X) - margin, *SCORE_RANGE), score)
        upper = np.maximum(np.clip(self.upper_.predict(X) + margin, *SCORE_RANGE), score)
        return score, lower, upper


def fit_intervals(corpus: Corpus, options: FitOptions, prior: str | None, level: float,
                  calibrate_by: str = "encoder") -> IntervalRegressor:
    """What `frgb fit --intervals LEVEL` trains (its point model is what `frgb fit` trains)."""
    model = IntervalRegressor(level=level, prior=prior, trees=options.trees or None, codec_blind=options.codec_blind,
                              monotone=options.monotone, random_state=options.seed, calibrate_by=calibrate_by,
                              layout=options.layout, codec_guard=options.codec_guard)
    return model.fit(design_matrix(corpus), corpus.target, corpus.group)


def interval_report(model: IntervalRegressor, corpus: Corpus) -> dict:
    """What `frgb fit --intervals` says about the interval model it fitted on `corpus`."""
    _, lower, upper = model.predict_interval(design_matrix(corpus))
    return {"level": model.level, "method": METHOD, "calibrate_by": model.calibrate_by,
            "calibration": model.calibration_, "in_sample": interval_figures(lower, upper, corpus.target)}


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


def out_of_fold_intervals(corpus: Corpus, fit, on_fold: OnFold | None = None) -> IntervalPredictions:
    """Leave-one-source-out: for each source, fit (and calibrate) on the others and predict it."""
    X = design_matrix(corpus)
    out = [np.empty(len(corpus)) for _ in range(7)]
    for held in corpus_folds(corpus, on_fold):
        model = fit(corpus.subset(~held))
        values = (*model.predict_interval(X[held]), *model.predict_interval(with_codec_blind(X[held]))[1:],
                  *model.predict_interval(X[held], pooled=True)[1:])
        for array, value in zip(out, values):
            array[held] = value
    return IntervalPredictions(*out)


def evaluate_loso(corpus: Corpus, options: FitOptions, prior: str | None, levels: list[float],
                  calibrate_by: str = "encoder", on_fold: OnFold | None = None) -> dict:
    """Leave-one-source-out coverage and width at each level, beside the point model's RMSE."""
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
