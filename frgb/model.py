"""The frgb model: the teacher prior plus a scaler + LightGBM pipeline fitted on its residual.

    score = clip(prior(features) + trees(scaled features, codec), 0, 100)

`X` is always the block [features | codec] in contract order (N, 6 + codec width); the two ONNX
inputs are its two halves. With `prior=None` the trees fit the score itself (plain gradient
boosting). `PriorResidualRegressor` holds what every such model shares (the prior, the
codec-blind copies, the clip); the MLP baseline (frgb.baseline) is the other learner on it.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
from lightgbm import LGBMRegressor
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from frgb.contract import (
    CARD, CODEC_WIDTH, N_FEATURES, SCORE_RANGE, Layout, guard_codec, layout_named, trusted_slots, with_codec_blind,
)
from frgb.teacher import DEFAULT_PRIOR, VmafTeacher

#: Monotone direction of each contract feature: VMAF does not fall when adm2 or a vif scale
#: rises; motion2 is left free.
MONOTONE_FEATURES = (1, 1, 1, 1, 1, 0)

#: LightGBM settings for the trees on the prior's residual, chosen by leave-one-source-out on
#: the shipped corpus (`frgb tune`, reports/tuning.md): few small steps that never make a
#: held-out source worse than the prior alone.
DEFAULT_TREES = {
    "n_estimators": 50,
    "learning_rate": 0.02,
    "num_leaves": 8,
    "min_child_samples": 120,
    "reg_lambda": 1.0,
}
#: LightGBM settings without a prior (`--prior none`: the trees fit the whole score), chosen by
#: the same search without the prior (`frgb tune --prior none`, reports/tuning.md).
PLAIN_TREES = {
    "n_estimators": 400,
    "learning_rate": 0.1,
    "num_leaves": 8,
    "min_child_samples": 40,
    "reg_lambda": 1.0,
}


def default_trees(prior: str | None) -> dict:
    """The tuned LightGBM settings for a model with or without the teacher prior."""
    return DEFAULT_TREES if prior else PLAIN_TREES


def input_columns(scaler, n_codec: int) -> ColumnTransformer:
    """`scaler` on the six features, the codec block passed through."""
    return ColumnTransformer(
        [
            ("scale", scaler, list(range(N_FEATURES))),
            ("codec", "passthrough", list(range(N_FEATURES, N_FEATURES + n_codec))),
        ]
    )


def make_pipeline(trees: dict, seed: int, monotone: bool = False, n_codec: int = CODEC_WIDTH) -> Pipeline:
    """Scaler on the six features, codec block passed through, then LightGBM."""
    constraints = {}
    if monotone:
        constraints = {
            "monotone_constraints": [*MONOTONE_FEATURES] + [0] * n_codec,
            "monotone_constraints_method": "advanced",
        }
    booster = LGBMRegressor(
        **trees,
        **constraints,
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    return Pipeline([("columns", input_columns(StandardScaler(), n_codec)), ("trees", booster)])


def as_float32_values(X) -> np.ndarray:
    """The float64 array of the float32 values a graph caller can pass: the model's domain."""
    return np.asarray(X, dtype=np.float32).astype(np.float64)


def check_inputs(X, n_codec: int = CODEC_WIDTH, allow_nan: bool = False) -> np.ndarray:
    """`X` as a dense float64 (N, 6 + n_codec) array, or a ValueError that says what is wrong
    (scikit-learn's check_array: sparse, complex, empty, 1-D or non-finite input; then the width).

    Prediction allows NaN (`allow_nan`): a missing feature gives a NaN score, as in the graphs."""
    X = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan" if allow_nan else True)
    if X.shape[1] != N_FEATURES + n_codec:
        raise ValueError(f"X must be [features | codec] of shape (N, {N_FEATURES + n_codec}), got {X.shape}")
    return X


class PriorResidualRegressor(RegressorMixin, BaseEstimator):
    """Base of the models that fit a learner on the teacher prior's residual.

    Subclasses store `prior` and `codec_blind` (and their own parameters) in `__init__` and
    provide `_learner()`, an unfitted scikit-learn regressor on [features | codec].

    Attributes
    ----------
    prior_ : VmafTeacher or None
        The fitted teacher (None without a prior).
    regressor_ : the fitted learner on the residual.
    n_features_in_ : int
    """

    def _learner(self):
        raise NotImplementedError

    def _fit_learner(self, learner, X: np.ndarray, residual: np.ndarray):
        return learner.fit(X, residual)

    def _domain(self, X: np.ndarray) -> np.ndarray:
        """The inputs the learner trains on (float32 values for models exported as graphs)."""
        return X

    @property
    def layout_(self) -> Layout:
        """The codec layout of X (the card's unless the model has a `layout` parameter)."""
        return layout_named(getattr(self, "layout", CARD.name))

    @property
    def guarded(self) -> bool:
        """Whether the codec guard (frgb.contract.guard_codec) runs before the learner."""
        guard = getattr(self, "codec_guard", False)
        return self.layout_.codec_guard if guard is None else bool(guard)

    def model_inputs(self, X: np.ndarray) -> np.ndarray:
        """[features | codec] as the learner sees them: the codec block guarded if `guarded`."""
        if not self.guarded:
            return X
        return np.hstack([X[:, :N_FEATURES], guard_codec(X[:, N_FEATURES:], self.trusted_slots_, self.layout_)])

    def fit(self, X, y):
        """Fit the learner on y - prior(X), with codec-blind copies of the rows if `codec_blind`."""
        layout = self.layout_
        X = self._domain(check_inputs(X, layout.codec_width))
        y = column_or_1d(check_array(y, dtype=np.float64, ensure_2d=False), warn=True)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows and y {len(y)}; they must match")
        if self.guarded:
            #: Encoder slots with training rows; every other codec block is scored codec-blind.
            self.trusted_slots_ = trusted_slots(X[:, N_FEATURES:], layout)
            X = self.model_inputs(X)
        self.prior_ = VmafTeacher(model=self.prior).fit() if self.prior else None
        prior = self.prior_score(X)
        if self.codec_blind:
            X, y = np.vstack([X, with_codec_blind(X, layout)]), np.concatenate([y, y])
            prior = np.concatenate([prior, prior])  # the copies have the same six features
        self.regressor_ = self._fit_learner(self._learner(), X, y - prior)
        self.n_features_in_ = X.shape[1]
        return self

    def prior_score(self, X) -> np.ndarray:
        """The teacher's score of each row (zeros without a prior)."""
        X = np.asarray(X)
        return self.prior_.predict(X[:, :N_FEATURES]) if self.prior_ is not None else np.zeros(len(X))

    def predict(self, X) -> np.ndarray:
        """clip(prior + learner, 0, 100) of each row."""
        check_is_fitted(self)
        X = check_inputs(X, self.layout_.codec_width, allow_nan=True)
        return np.clip(self.prior_score(X) + self.regressor_.predict(self.model_inputs(X)), *SCORE_RANGE)


class FrgbRegressor(PriorResidualRegressor):
    """Teacher prior + scaler/LightGBM residual pipeline on [features | codec].

    Parameters
    ----------
    prior : str or None, default DEFAULT_PRIOR
        A VMAF model name or path (the teacher), or None for plain gradient boosting.
    trees : dict or None
        LightGBM settings over `default_trees(prior)`.
    codec_blind : bool, default True
        Also train on copies of every row with the codec-blind block, so that a caller without
        codec metadata gets a codec-unaware answer.
    layout : str, default "card"
        The codec layout of X (frgb.contract.LAYOUTS): its width and codec-blind vector.
    codec_guard : bool or None, default None (the layout's default)
        Score every codec block without a trained encoder slot as the codec-blind vector
        (frgb.contract.guard_codec), in Python and in the graph.
    monotone : bool, default False
        Constrain the score not to fall when adm2 or a vif scale rises (MONOTONE_FEATURES).
    random_state : int, default 0
        LightGBM's seed; fits are deterministic for a given seed.

    Attributes
    ----------
    prior_, regressor_ (the fitted Pipeline), n_features_in_ : as in PriorResidualRegressor.
    booster_ : lightgbm.Booster of the residual trees.
    scaler_ : the fitted StandardScaler of the six features.
    trees_ : the fitted LGBMRegressor.
    trusted_slots_ : tuple of int, with the guard: the encoder slots that had training rows.
    """

    def __init__(self, *, prior: str | None = DEFAULT_PRIOR, trees: dict | None = None, codec_blind: bool = True,
                 monotone: bool = False, random_state: int = 0, layout: str = CARD.name,
                 codec_guard: bool | None = None):
        self.prior = prior
        self.trees = trees
        self.codec_blind = codec_blind
        self.monotone = monotone
        self.random_state = random_state
        self.layout = layout
        self.codec_guard = codec_guard

    def _learner(self) -> Pipeline:
        return make_pipeline({**default_trees(self.prior), **(self.trees or {})}, self.random_state, self.monotone,
                             self.layout_.codec_width)

    def _domain(self, X: np.ndarray) -> np.ndarray:
        return as_float32_values(X)

    def staged_predict(self, X, tree_counts: Iterable[int]) -> Iterator[np.ndarray]:
        """The score with only the first k trees, for each k in `tree_counts` (0: the prior alone)."""
        check_is_fitted(self)
        X = check_inputs(X, self.layout_.codec_width, allow_nan=True)
        base, columns = self.prior_score(X), self.regressor_[:-1].transform(self.model_inputs(X))
        for k in tree_counts:
            trees = self.trees_.predict(columns, num_iteration=k) if k else 0.0
            yield np.clip(base + trees, *SCORE_RANGE)

    def contributions(self, X) -> np.ndarray:
        """SHAP contribution (N, inputs) of each input to the residual trees (LightGBM pred_contrib)."""
        check_is_fitted(self)
        X = self.model_inputs(check_inputs(X, self.layout_.codec_width))
        return self.booster_.predict(self.regressor_[:-1].transform(X), pred_contrib=True)[:, :-1]

    @property
    def trees_(self) -> LGBMRegressor:
        return self.regressor_.named_steps["trees"]

    @property
    def booster_(self):
        return self.trees_.booster_

    @property
    def scaler_(self) -> StandardScaler:
        return self.regressor_.named_steps["columns"].named_transformers_["scale"]
