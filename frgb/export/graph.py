"""The whole model as one ONNX graph with the fr_regressor_v2 contract.

    features (N, 6) float32, codec (N, 8) float32  ->  score (N,) float32, opset 17

Inside: the features the caller passes are mapped to the raw features the model was trained on
(identity by default; with `--input-scaler`, x * std + mean of an existing sidecar), the trees
run on [features | codec] with thresholds folded exactly into that input domain, the teacher
prior runs in float64, and their sum is clipped to [0, 100].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxCast, OnnxClip, OnnxMul, OnnxReshape
from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

import frgb.export.teacher_onnx  # noqa: F401  (registers the teacher's converter)
from frgb.contract import FEATURES, INPUT_CODEC, INPUT_FEATURES, OPSET, OUTPUT_SCORE, SCORE_RANGE
from frgb.errors import FrgbError
from frgb.export.thresholds import raw_domain_booster
from frgb.export.trees_onnx import TARGETS, RawTrees
from frgb.model import N_FEATURES, FrgbRegressor

GRAPH_NAME = "frgb"


@dataclass
class Graph:
    """A fitted model and the feature scaling its graph's callers apply (identity by default)."""

    model: FrgbRegressor
    input_mean: np.ndarray = field(default_factory=lambda: np.zeros(N_FEATURES))
    input_std: np.ndarray = field(default_factory=lambda: np.ones(N_FEATURES))

    def fit(self, *args):
        """Nothing to learn (skl2onnx recognises models by their `fit`)."""
        return self

    def raw_features(self, features) -> np.ndarray:
        """What the model sees (float64) for the `features` a caller passes."""
        return np.asarray(features, dtype=np.float32).astype(np.float64) * self.input_std + self.input_mean

    def predict(self, features, codec) -> np.ndarray:
        """The Python reference for the graph: the score of graph inputs."""
        codec = np.asarray(codec, dtype=np.float32).astype(np.float64)
        return self.model.predict(np.hstack([self.raw_features(features), codec]))

    def raw_trees(self) -> RawTrees:
        """The model's trees with thresholds on the graph's own float32 inputs."""
        scaler = self.model.scaler_
        maps = [
            (lambda s, a=a, b=b, m=m, d=d: ((s * a + b) - m) / d)
            for a, b, m, d in zip(self.input_std, self.input_mean, scaler.mean_, scaler.scale_)
        ]
        maps += [lambda s: s] * (self.model.n_features_in_ - N_FEATURES)
        return RawTrees(raw_domain_booster(self.model.booster_, maps))


def _shape(operator) -> None:
    operator.outputs[0].type = FloatTensorType([operator.inputs[0].get_first_dimension()])


def _convert(scope, operator, container) -> None:
    graph: Graph = operator.raw_operator
    opv = container.target_opset
    options = container.get_options(graph, dict(target="onnxml", strategy="auto"))
    features, codec = operator.inputs
    n_codec = codec.type.shape[1]
    x = scope.declare_local_variable("x", FloatTensorType([None, N_FEATURES + n_codec]))
    container.add_node("Concat", [features.full_name, codec.full_name], x.full_name, axis=1,
                       name=scope.get_unique_operator_name("Concat"))
    trees = OnnxSubEstimator(graph.raw_trees(), x, op_version=opv,
                             options={"target": options["target"], "strategy": options["strategy"]})
    total = OnnxCast(trees, to=TensorProto.DOUBLE, op_version=opv)
    if graph.model.prior_ is not None:
        raw = features
        if not (np.all(graph.input_std == 1) and np.all(graph.input_mean == 0)):
            raw = scope.declare_local_variable("raw_features", DoubleTensorType([None, N_FEATURES]))
            scaled = OnnxCast(features, to=TensorProto.DOUBLE, op_version=opv)
            OnnxAdd(OnnxMul(scaled, graph.input_std[None, :].astype(np.float64), op_version=opv),
                    graph.input_mean[None, :].astype(np.float64), op_version=opv,
                    output_names=[raw]).add_to(scope, container)
        prior = OnnxSubEstimator(graph.model.prior_, raw, op_version=opv)
        total = OnnxAdd(total, prior, op_version=opv)
    low, high = (np.array(v, dtype=np.float64) for v in SCORE_RANGE)
    score = OnnxCast(OnnxClip(total, low, high, op_version=opv), to=TensorProto.FLOAT, op_version=opv)
    out = OnnxReshape(score, np.array([-1], dtype=np.int64), op_version=opv, output_names=[operator.outputs[0]])
    out.add_to(scope, container)


update_registered_converter(
    Graph, "FrgbGraph", _shape, _convert,
    options={"target": list(TARGETS), "strategy": ["auto", "gemm", "traversal"]},
)


def to_onnx(graph: Graph, target: str = "onnxml", strategy: str = "auto") -> onnx.ModelProto:
    """Convert with skl2onnx; the result has a fixed graph name so its bytes are reproducible."""
    if target not in TARGETS:
        raise FrgbError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    proto = convert_sklearn(
        graph,
        initial_types=[(INPUT_FEATURES, FloatTensorType([None, N_FEATURES])),
                       (INPUT_CODEC, FloatTensorType([None, 8]))],
        final_types=[(OUTPUT_SCORE, FloatTensorType([None]))],
        target_opset={"": OPSET, "ai.onnx.ml": 3},
        options={id(graph): {"target": target, "strategy": strategy}},
        naming=lambda name, existing: _unique(name, existing),
    )
    proto.graph.name = GRAPH_NAME
    proto.doc_string = ""
    _check_opset(proto)
    return proto


def _unique(name: str, existing: set) -> str:
    if name not in existing:
        return name
    i = 1
    while f"{name}{i}" in existing:
        i += 1
    return f"{name}{i}"


def _check_opset(proto: onnx.ModelProto) -> None:
    default = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if default != [OPSET]:
        raise FrgbError(f"export wrote default-domain opset {default}, the contract needs {OPSET}")
