"""The teacher prior: libvmaf's own VMAF model (a libsvm nu-SVR with an RBF kernel).

`VmafTeacher` reads a VMAF model file and computes, from the six contract features, the score
libvmaf would give a frame with those features. Applied to a row's mean features it predicts
the row's `vmaf_score` closely, with no training; frgb boosts only what it misses.

libvmaf's recipe (model_dict, norm_type `linear_rescale`), in the model's own feature order
(adm2, motion2, vif_scale0..3):
    z_i   = slopes[i + 1] * x_i + intercepts[i + 1]
    y     = sum_j coef_j * exp(-gamma * |z - sv_j|^2) - rho
    score = clip((y - intercepts[0]) / slopes[0], score_clip)
`score_transform` is applied by libvmaf only with `enable_transform`, which is not the default,
so it is not applied here.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted

from frgb.contract import DEFAULT_PRIOR, FEATURES
from frgb.errors import FrgbError
from frgb.files import is_finite_number, read_json

#: Models shipped with frgb (see frgb/vmaf_models/README.md), by the name corpora record.
BUILTIN_MODELS = ("vmaf_v0.6.1", "vmaf_4k_v0.6.1")
#: Rows per block of the kernel evaluation: its temporaries are CHUNK_ROWS x 211 float64.
CHUNK_ROWS = 1 << 14


def _model_json(model: str) -> dict:
    """The `model_dict` of a built-in model or of a VMAF model file (read strictly, bounded)."""
    if model in BUILTIN_MODELS:
        data = json.loads(resources.files("frgb.vmaf_models").joinpath(f"{model}.json").read_text())
    else:
        path = Path(model)
        if not path.exists():
            raise FrgbError(f"VMAF model {model!r}: not a built-in ({', '.join(BUILTIN_MODELS)}) nor a file")
        data = read_json(path, "a VMAF model file")
    if not isinstance(data, dict) or not isinstance(data.get("model_dict"), dict):
        raise FrgbError(f"VMAF model {model!r}: not a VMAF model JSON (no model_dict)")
    return data["model_dict"]


def _numbers(spec: dict, key: str, n: int) -> np.ndarray:
    """`spec[key]` as n finite floats, or a ValueError naming the key."""
    value = spec.get(key)
    if not isinstance(value, list) or len(value) != n or not all(map(is_finite_number, value)):
        raise ValueError(f"{key} must be {n} finite numbers")
    return np.asarray(value, dtype=np.float64)


def _parse_libsvm(text: str, n_features: int) -> tuple[float, float, np.ndarray, np.ndarray]:
    """gamma, rho, dual coefficients and dense support vectors of a libsvm model string (a
    ValueError says what is wrong with it)."""
    if not isinstance(text, str) or "\nSV\n" not in text:
        raise ValueError("model is not a libsvm model string (no SV section)")
    header, _, body = text.partition("\nSV\n")
    fields = dict(line.split(" ", 1) for line in header.splitlines() if " " in line)
    if fields.get("kernel_type") != "rbf":
        raise FrgbError(f"VMAF model: only RBF kernels are supported, got {fields.get('kernel_type')!r}")
    coefs, vectors = [], []
    for number, line in enumerate(body.strip().splitlines(), 1):
        parts = line.split()
        try:
            coefs.append(float(parts[0]))
            sv = np.zeros(n_features)
            for item in parts[1:]:
                index, value = item.split(":")
                if not 1 <= int(index) <= n_features:
                    raise ValueError(f"feature index {index}")
                sv[int(index) - 1] = float(value)  # libsvm is sparse: absent means 0
        except (ValueError, IndexError) as e:
            raise ValueError(f"support vector {number} cannot be read ({e})") from None
        vectors.append(sv)
    try:
        gamma, rho = float(fields["gamma"]), float(fields["rho"])
    except (KeyError, ValueError):
        raise ValueError("gamma or rho missing from the libsvm header") from None
    coef, sv = np.array(coefs), np.array(vectors).reshape(-1, n_features)
    finite = np.isfinite([gamma, rho]).all() and np.isfinite(coef).all() and np.isfinite(sv).all()
    if not (coefs and finite and gamma > 0):
        raise ValueError("the libsvm model needs support vectors and finite gamma > 0, rho and coefficients")
    return gamma, rho, coef, sv


class VmafTeacher(RegressorMixin, BaseEstimator):
    """The VMAF model's score of the six contract features (N, 6) -> (N,).

    Nothing is learned: `fit` reads the model file.

    Parameters
    ----------
    model : str, default DEFAULT_PRIOR
        A built-in name (vmaf_v0.6.1, vmaf_4k_v0.6.1) or a path to a VMAF model JSON.

    Attributes
    ----------
    gamma_, rho_, dual_coef_ : the RBF SVR's kernel width, offset and dual coefficients.
    support_vectors_ : ndarray (n_sv, 6), in contract feature order.
    feature_slope_, feature_intercept_ : ndarray (6,), libvmaf's linear rescale of each feature.
    score_slope_, score_intercept_, score_clip_ : the map from the SVR output to the score.
    """

    def __init__(self, *, model: str = DEFAULT_PRIOR):
        self.model = model

    def fit(self, X=None, y=None):
        """Read and check the model file; returns self. `X` (N, 6), if given, is only checked: nothing is learned."""
        if X is not None and check_array(X).shape[1] != len(FEATURES):
            raise ValueError(f"X must be the {len(FEATURES)} features {', '.join(FEATURES)}, got {np.shape(X)}")
        spec = _model_json(self.model)
        try:
            self._read(spec)
        except (ValueError, TypeError, AttributeError) as e:
            raise FrgbError(f"VMAF model {self.model!r}: not a usable VMAF model ({e})") from None
        return self

    def _read(self, spec: dict) -> None:
        if spec.get("norm_type") != "linear_rescale":
            raise FrgbError(f"VMAF model {self.model!r}: norm_type {spec.get('norm_type')!r} is not supported")
        given = spec.get("feature_names")
        if not isinstance(given, list) or not all(isinstance(n, str) for n in given):
            raise ValueError("feature_names must be a list of names")
        names = [n.replace("VMAF_integer_feature_", "").replace("VMAF_feature_", "").removesuffix("_score")
                 for n in given]
        if sorted(names) != sorted(FEATURES):
            raise FrgbError(f"VMAF model {self.model!r} uses features {names}, not the contract's six")
        order = [names.index(f) for f in FEATURES]  # model column for each contract column
        slopes, intercepts = _numbers(spec, "slopes", len(names) + 1), _numbers(spec, "intercepts", len(names) + 1)
        if slopes[0] == 0:
            raise ValueError("slopes[0] (the score's) is 0")
        gamma, rho, coef, sv = _parse_libsvm(spec.get("model"), len(names))
        clip = _numbers(spec, "score_clip", 2) if "score_clip" in spec else np.array([-np.inf, np.inf])
        self.gamma_ = gamma
        self.rho_ = rho
        self.dual_coef_ = coef
        self.support_vectors_ = sv[:, order]  # contract order from here on
        self.feature_slope_ = slopes[1:][order]
        self.feature_intercept_ = intercepts[1:][order]
        self.score_slope_ = float(slopes[0])
        self.score_intercept_ = float(intercepts[0])
        self.score_clip_ = tuple(float(v) for v in clip)
        self.n_features_in_ = len(FEATURES)

    def decision_function(self, X) -> np.ndarray:
        """The SVR output y before it is mapped back to the score scale.

        |z - sv|^2 is expanded as |z|^2 - 2 z.sv + |sv|^2 (as the ONNX graph computes it) and
        evaluated in blocks of CHUNK_ROWS rows, so memory stays bounded for any N."""
        check_is_fitted(self)
        z = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
        if z.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be the {self.n_features_in_} features {', '.join(FEATURES)}, got {z.shape}")
        z = z * self.feature_slope_ + self.feature_intercept_
        sv = self.support_vectors_
        sv_squared = (sv**2).sum(axis=1)
        y = np.empty(len(z))
        for start in range(0, len(z), CHUNK_ROWS):
            block = z[start:start + CHUNK_ROWS]
            d2 = (block**2).sum(axis=1)[:, None] - 2.0 * (block @ sv.T) + sv_squared
            y[start:start + CHUNK_ROWS] = np.exp(-self.gamma_ * d2) @ self.dual_coef_
        return y - self.rho_

    def predict(self, X) -> np.ndarray:
        """The score libvmaf gives a frame with features `X` (N, 6)."""
        y = self.decision_function(X)
        return np.clip((y - self.score_intercept_) / self.score_slope_, *self.score_clip_)
