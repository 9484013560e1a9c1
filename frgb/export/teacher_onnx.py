"""skl2onnx converter for `VmafTeacher`: the RBF SVR in default-domain ops, in float64.

The caller's features x (graph inputs, float32) reach the SVR through one affine map,
z = a * x + b (libvmaf's linear rescale, with an `--input-scaler` x * std + mean folded in). Each
support vector's exponent is then

    -gamma |z - sv_j|^2 = q(x) + sum_i w_ij x_i + beta_j,   q(x) = sum_i (-gamma a_i^2) x_i^2,
    w_ij = -2 gamma a_i (b_i - sv_ji),   beta_j = -gamma |b - sv_j|^2

where q(x) is the same for every support vector and exp(beta_j) is a constant, folded into the
dual coefficients. So the prior is seven nodes, each (N, n_sv) pass done once, and the wide
product reads 6 columns, not 12:

    Cast(x) -> Mul(x, x) -> MatMul (6, 1): q (N, 1)
            -> Gemm(x, (6, n_sv), C = q) -> Exp
            -> Gemm (n_sv, 1) with c_j = dual_coef_j exp(beta_j) / slopes[0],
                    bias -(rho + intercepts[0]) / slopes[0]
            -> Clip(score_clip)

Ops: Cast, Mul, MatMul, Gemm, Exp, Clip (all on libvmaf's allowlist).

Why float64 throughout (error bound, u the unit roundoff, gamma_k = k u / (1 - k u)): with
M_j = |q(x)| + sum_i |w_ij x_i| the magnitude of exponent j's terms and c_j as above, the score
before its clip is off the exact value by at most

    sum_j |c_j| K_j (gamma_16 M_j + 3u) + gamma_(n_sv+1) (sum_j |c_j| K_j + |bias|)

(K_j the term exp(q + w_j x); the products x*x are exact in float64; 6 products and the sum
with q, plus up to three roundings in each constant; Exp within 2u, c_j within u). The Python
teacher's own rounding is of the same order. For vmaf_v0.6.1 the dual coefficients are +-4 and
slopes[0] = 0.012, so sum_j |c_j| K_j reaches 6.8e4 while the score stays below 140: the sum
cancels by a factor of about 500. Over adm2 and vif in [0, 1.2] and motion2 in [0, 40], M_j <= 3.3
and the bound is 1.8e-9 VMAF with u = 2^-53; the same bound with u = 2^-24 is 1.0 VMAF, and a
float32 graph measured 4e-3 there (3.9e-3 on the shipped corpus): forty times the parity
tolerance of 1e-4. Rounding only K_j to float32 (exponent and sum in float64) still misses by up
to 3.6e-4 (rms 8e-5) there. So the exponent, Exp and the sum stay in float64 (measured within
1e-11 of the Python teacher on that range); only the final score, after the trees are added, is
rounded to float32. `tests/test_export.py` checks the graph against the float64 teacher on a grid
of that range and that a float32 build of the same graph fails it.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx.algebra.onnx_ops import OnnxCast, OnnxClip, OnnxExp, OnnxGemm, OnnxMatMul, OnnxMul
from skl2onnx.common.data_types import DoubleTensorType

from frgb.teacher import VmafTeacher


def prior_weights(teacher: VmafTeacher, input_mean=None, input_std=None) -> dict[str, np.ndarray]:
    """The constants of the prior's products, in float64, for graph inputs x with raw = x * std + mean.

    `square` (6, 1) gives q(x) from x*x, `kernel` (6, n_sv) the rest of the exponents from x;
    `coef` (n_sv, 1) and `coef_bias` (1,) give the score before its clip from exp(exponents)."""
    n = len(teacher.feature_slope_)
    mean = np.zeros(n) if input_mean is None else np.asarray(input_mean, dtype=np.float64)
    std = np.ones(n) if input_std is None else np.asarray(input_std, dtype=np.float64)
    a = teacher.feature_slope_ * std
    b = teacher.feature_slope_ * mean + teacher.feature_intercept_
    g = teacher.gamma_
    offset = b[:, None] - teacher.support_vectors_.T  # (6, n_sv): b_i - sv_ji
    beta = -g * (offset**2).sum(axis=0)
    return {
        "square": (-g * a * a)[:, None],
        "kernel": -2.0 * g * a[:, None] * offset,
        "coef": (teacher.dual_coef_ * np.exp(beta) / teacher.score_slope_)[:, None],
        "coef_bias": np.array([-(teacher.rho_ + teacher.score_intercept_) / teacher.score_slope_]),
    }


def teacher_graph(teacher: VmafTeacher, features, op_version: int, output_names=None, input_mean=None,
                  input_std=None, dtype=np.float64):
    """Algebra node: (N, 6) float32 features -> (N, 1) teacher score (float64; `dtype` exists for
    the test that shows float32 is not precise enough)."""
    w = {k: v.astype(dtype) for k, v in prior_weights(teacher, input_mean, input_std).items()}
    to = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    x = OnnxCast(features, to=to, op_version=op_version)
    shared = OnnxMatMul(OnnxMul(x, x, op_version=op_version), w["square"], op_version=op_version)
    exponent = OnnxGemm(x, w["kernel"], shared, op_version=op_version)
    score = OnnxGemm(OnnxExp(exponent, op_version=op_version), w["coef"], w["coef_bias"], op_version=op_version)
    low, high = (np.array(v, dtype=dtype) for v in teacher.score_clip_)
    return OnnxClip(score, low, high, op_version=op_version, output_names=output_names)


def _shape(operator) -> None:
    operator.outputs[0].type = DoubleTensorType([operator.inputs[0].get_first_dimension(), 1])


def _convert(scope, operator, container) -> None:
    node = teacher_graph(operator.raw_operator, operator.inputs[0], container.target_opset,
                         output_names=[operator.outputs[0]])
    node.add_to(scope, container)


update_registered_converter(VmafTeacher, "FrgbVmafTeacher", _shape, _convert)
