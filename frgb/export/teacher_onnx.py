"""skl2onnx converter for `VmafTeacher`: the RBF SVR in default-domain ops, in float64.

The score scale divides by slopes[0] (about 0.012), which magnifies float32 rounding of the
SVR sum to about 1e-3 VMAF; computing in float64 keeps the graph within 1e-9 of Python.
The kernel uses |z - sv|^2 = |z|^2 - 2 z.sv + |sv|^2 so that the largest tensor is (N, n_sv).
Ops: Cast, Mul, Add, Sub, MatMul, ReduceSum, Exp, Div, Clip (all on libvmaf's allowlist).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx.algebra.onnx_ops import (
    OnnxAdd, OnnxCast, OnnxClip, OnnxDiv, OnnxExp, OnnxMatMul, OnnxMul, OnnxReduceSum, OnnxSub,
)
from skl2onnx.common.data_types import DoubleTensorType

from frgb.teacher import VmafTeacher


def teacher_graph(teacher: VmafTeacher, features, op_version: int, output_names=None):
    """Algebra node: (N, 6) float32 features -> (N, 1) float64 teacher score."""
    f64 = np.float64
    x = OnnxCast(features, to=TensorProto.DOUBLE, op_version=op_version)
    z = OnnxAdd(
        OnnxMul(x, teacher.feature_slope_[None, :].astype(f64), op_version=op_version),
        teacher.feature_intercept_[None, :].astype(f64),
        op_version=op_version,
    )
    sv = teacher.support_vectors_.astype(f64)
    zz = OnnxReduceSum(OnnxMul(z, z, op_version=op_version), np.array([1], dtype=np.int64),
                       keepdims=1, op_version=op_version)
    cross = OnnxMatMul(z, (-2.0 * sv.T).astype(f64), op_version=op_version)
    d2 = OnnxAdd(OnnxAdd(cross, zz, op_version=op_version), (sv**2).sum(axis=1)[None, :], op_version=op_version)
    kernel = OnnxExp(OnnxMul(d2, np.array([-teacher.gamma_], dtype=f64), op_version=op_version),
                     op_version=op_version)
    y = OnnxSub(OnnxMatMul(kernel, teacher.dual_coef_[:, None].astype(f64), op_version=op_version),
                np.array([teacher.rho_], dtype=f64), op_version=op_version)
    score = OnnxDiv(OnnxSub(y, np.array([teacher.score_intercept_], dtype=f64), op_version=op_version),
                    np.array([teacher.score_slope_], dtype=f64), op_version=op_version)
    low, high = (np.array(v, dtype=f64) for v in teacher.score_clip_)
    return OnnxClip(score, low, high, op_version=op_version, output_names=output_names)


def _shape(operator) -> None:
    operator.outputs[0].type = DoubleTensorType([operator.inputs[0].get_first_dimension(), 1])


def _convert(scope, operator, container) -> None:
    node = teacher_graph(operator.raw_operator, operator.inputs[0], container.target_opset,
                         output_names=[operator.outputs[0]])
    node.add_to(scope, container)


update_registered_converter(VmafTeacher, "FrgbVmafTeacher", _shape, _convert)
