"""The frgb model: the teacher prior plus a scaler + LightGBM pipeline fitted on its residual.

    score = clip(prior(features) + trees(scaled features, codec), 0, 100)

`X` is always the (N, 14) block [features | codec] in contract order; the two ONNX inputs are
its two halves. With `prior=None` the trees fit the score itself (plain gradient boosting).
"""

from __future__ import annotations

import numpy as np
from lightgbm import LGBMRegressor
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from frgb.contract import CODEC_BLIND, FEATURES, SCORE_RANGE
from frgb.teacher import VmafTeacher

N_FEATURES = len(FEATURES)
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


def make_pipeline(trees: dict, seed: int, monotone: bool = False) -> Pipeline:
    """Scaler on the six features, codec block passed through, then LightGBM."""
    n_codec = 8
    constraints = {}
    if monotone:
        constraints = {
            "monotone_constraints": [*MONOTONE_FEATURES] + [0] * n_codec,
            "monotone_constraints_method": "advanced",
        }
    columns = ColumnTransformer(
        [
            ("scale", StandardScaler(), list(range(N_FEATURES))),
            ("codec", "passthrough", list(range(N_FEATURES, N_FEATURES + n_codec))),
        ]
    )
    booster = LGBMRegressor(
        **trees,
        **constraints,
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    return Pipeline([("columns", columns), ("trees", booster)])


def as_float32_values(X) -> np.ndarray:
    """The float64 array of the float32 values a graph caller can pass: the model's domain."""
    return np.asarray(X, dtype=np.float32).astype(np.float64)


def with_blind_copies(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[X; X with the codec-blind block] and [y; y]: the rows a codec_blind model trains on."""
    blind = X.copy()
    blind[:, N_FEATURES:] = as_float32_values(CODEC_BLIND)
    return np.vstack([X, blind]), np.concatenate([y, y])


class FrgbRegressor(RegressorMixin, BaseEstimator):
    """Teacher prior + scaler/LightGBM residual pipeline on [features | codec] (N, 14).

    prior: a VMAF model name or path, or None for plain gradient boosting.
    codec_blind: also train on copies of every row with the codec-blind block, so that a
        caller without codec metadata gets a codec-unaware answer.
    """

    def __init__(self, prior: str | None = "vmaf_v0.6.1", trees: dict | None = None,
                 codec_blind: bool = True, monotone: bool = False, seed: int = 0):
        self.prior = prior
        self.trees = trees
        self.codec_blind = codec_blind
        self.monotone = monotone
        self.seed = seed

    def fit(self, X, y):
        X = as_float32_values(X)
        y = np.asarray(y, dtype=np.float64)
        self.prior_ = VmafTeacher(self.prior).fit() if self.prior else None
        prior = self.prior_score(X)
        if self.codec_blind:
            X, y = with_blind_copies(X, y)
            prior = np.concatenate([prior, prior])  # the copies have the same six features
        residual = y - prior
        self.pipeline_ = make_pipeline({**default_trees(self.prior), **(self.trees or {})}, self.seed, self.monotone)
        self.pipeline_.fit(X, residual)
        self.n_features_in_ = X.shape[1]
        return self

    def prior_score(self, X) -> np.ndarray:
        """The teacher's score of each row (zeros without a prior)."""
        X = np.asarray(X)
        return self.prior_.predict(X[:, :N_FEATURES]) if self.prior_ is not None else np.zeros(len(X))

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return np.clip(self.prior_score(X) + self.pipeline_.predict(X), *SCORE_RANGE)

    @property
    def booster_(self):
        return self.pipeline_.named_steps["trees"].booster_

    @property
    def scaler_(self) -> StandardScaler:
        return self.pipeline_.named_steps["columns"].named_transformers_["scale"]
