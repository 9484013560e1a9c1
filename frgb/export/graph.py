"""The whole model as one ONNX graph with the fr_regressor_v2 contract.

    features (N, 6) float32, codec (N, 8) float32  ->  score (N,) float32, opset 17

Inside: the features the caller passes are mapped to the raw features the model was trained on
(identity by default; with `--input-scaler`, x * std + mean of an existing sidecar), the trees
run on [features | codec] with thresholds folded exactly into that input domain, the teacher
prior runs in float64 with that map folded into its first Gemm (frgb/export/teacher_onnx.py),
and their sum is clipped to [0, 100]:

    score = Clip(Cast32(prior) + trees, 0, 100)        (prior already clipped to [0, 100])

The prior is rounded to float32 before the Add (one node less per call than adding in float64
and rounding the sum): two roundings of numbers below 128 instead of one, so at most 3.8e-6
more than the float64 sum, against the parity tolerance of 1e-4 (measured: 7.5e-6 in all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import onnx
from onnx import TensorProto
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxCast, OnnxClip, OnnxReshape
from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
from skl2onnx.common.data_types import FloatTensorType

from frgb.contract import INPUT_CODEC, INPUT_FEATURES, OPSET, OUTPUT_SCORE, SCORE_RANGE
from frgb.errors import FrgbError
from frgb.export.libvmaf_trees import STRATEGIES
from frgb.export.teacher_onnx import teacher_graph
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
    OUTPUTS: ClassVar[tuple[str, ...]] = (OUTPUT_SCORE,)

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

    def outputs(self, features, codec) -> list[np.ndarray]:
        """The Python reference for each graph output, in order."""
        return [self.predict(features, codec)]

    def raw_trees(self) -> RawTrees:
        """The model's trees with thresholds on the graph's own float32 inputs."""
        return raw_trees(self.model, self.input_mean, self.input_std)

    def all_raw_trees(self) -> list[RawTrees]:
        """Every tree ensemble in the graph (the parity check probes the thresholds of each)."""
        return [self.raw_trees()]


def raw_trees(model: FrgbRegressor, input_mean: np.ndarray, input_std: np.ndarray) -> RawTrees:
    """`model`'s trees with thresholds on float32 features that callers scale with input_mean/std."""
    scaler = model.scaler_
    maps = [
        (lambda s, a=a, b=b, m=m, d=d: ((s * a + b) - m) / d)
        for a, b, m, d in zip(input_std, input_mean, scaler.mean_, scaler.scale_)
    ]
    maps += [lambda s: s] * (model.n_features_in_ - N_FEATURES)
    return RawTrees(raw_domain_booster(model.booster_, maps))


# The parts of the graph, shared with the interval graph (frgb/export/interval_graph.py).

def concat_inputs(scope, operator, container):
    """The trees' input [features | codec] (N, 14) float32."""
    features, codec = operator.inputs
    x = scope.declare_local_variable("x", FloatTensorType([None, N_FEATURES + codec.type.shape[1]]))
    container.add_node("Concat", [features.full_name, codec.full_name], x.full_name, axis=1,
                       name=scope.get_unique_operator_name("Concat"))
    return x


def tree_sum(trees: RawTrees, x, options: dict, opv: int):
    """Algebra node: the sum of the trees (N, 1) float32."""
    return OnnxSubEstimator(trees, x, op_version=opv,
                            options={"target": options["target"], "strategy": options["strategy"]})


def prior_score(scope, operator, container, graph, output_names=None):
    """Algebra node: the teacher's score (N, 1) of the caller's features, computed in float64 and
    rounded to float32 once it is clipped to [0, 100]; None without a prior.

    The caller's scaling (identity unless --input-scaler) is folded into the prior's first Gemm."""
    if graph.model.prior_ is None:
        return None
    opv = container.target_opset
    prior = teacher_graph(graph.model.prior_, operator.inputs[0], opv, input_mean=graph.input_mean,
                          input_std=graph.input_std)
    return OnnxCast(prior, to=TensorProto.FLOAT, op_version=opv, output_names=output_names)


def clip_score(total, opv: int, output_names=None):
    """Algebra node: `total` clipped to the score range (float32)."""
    low, high = (np.array(v, dtype=np.float32) for v in SCORE_RANGE)
    return OnnxClip(total, low, high, op_version=opv, output_names=output_names)


def add_output(scope, container, node, output) -> None:
    """Write a float32 (N, 1) algebra node to the graph output `output` as (N,)."""
    opv = container.target_opset
    OnnxReshape(node, np.array([-1], dtype=np.int64), op_version=opv, output_names=[output]).add_to(scope, container)


def _shape(operator) -> None:
    for output in operator.outputs:
        output.type = FloatTensorType([operator.inputs[0].get_first_dimension()])


def converter_options(container, graph) -> dict:
    return container.get_options(graph, dict(target="onnxml", strategy="auto"))


def _convert(scope, operator, container) -> None:
    graph: Graph = operator.raw_operator
    opv = container.target_opset
    x = concat_inputs(scope, operator, container)
    total = tree_sum(graph.raw_trees(), x, converter_options(container, graph), opv)
    prior = prior_score(scope, operator, container, graph)
    if prior is not None:
        total = OnnxAdd(total, prior, op_version=opv)
    add_output(scope, container, clip_score(total, opv), operator.outputs[0])


#: Options of the graph converters: the trees' target and the libvmaf tree strategy.
CONVERTER_OPTIONS = {"target": list(TARGETS), "strategy": STRATEGIES}

update_registered_converter(Graph, "FrgbGraph", _shape, _convert, options=CONVERTER_OPTIONS)


def to_onnx(graph, target: str = "onnxml", strategy: str = "auto") -> onnx.ModelProto:
    """Convert a `Graph` (or an `IntervalGraph`) with skl2onnx; the result has a fixed graph name
    so its bytes are reproducible."""
    if target not in TARGETS:
        raise FrgbError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    proto = convert_sklearn(
        graph,
        initial_types=[(INPUT_FEATURES, FloatTensorType([None, N_FEATURES])),
                       (INPUT_CODEC, FloatTensorType([None, 8]))],
        final_types=[(name, FloatTensorType([None])) for name in graph.OUTPUTS],
        target_opset={"": OPSET, "ai.onnx.ml": 3},
        options={id(graph): {"target": target, "strategy": strategy}},
        naming=lambda name, existing: _unique(name, existing),
    )
    proto.graph.name = GRAPH_NAME
    proto.doc_string = ""
    _drop_output_casts(proto)
    _tidy_opsets(proto)
    _check_opset(proto)
    return proto


def _drop_output_casts(proto: onnx.ModelProto) -> None:
    """Remove the Cast skl2onnx appends to each graph output where its input already has the
    output's type (`add_output` writes float32): an identity onnxruntime would still run."""
    producer = {out: node for node in proto.graph.node for out in node.output}
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    for output in proto.graph.output:
        cast = producer.get(output.name)
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in producer:
            continue
        to = next(a.i for a in cast.attribute if a.name == "to")
        if types.get(cast.input[0]) != to or to != output.type.tensor_type.elem_type:
            continue
        if any(cast.input[0] in node.input for node in proto.graph.node if node is not cast):
            continue
        producer[cast.input[0]].output[:] = [output.name if o == cast.input[0] else o
                                             for o in producer[cast.input[0]].output]
        proto.graph.node.remove(cast)


def _tidy_opsets(proto: onnx.ModelProto) -> None:
    """Keep the opset imports of the domains the nodes use (the default domain always), sorted.

    skl2onnx declares `ai.onnx.ml` even when no node uses it, which a strict loader may refuse,
    and lists imports in set order, which follows Python's string hashing and so changes from
    one process to the next: sorting keeps the bytes the same."""
    used = {node.domain or "" for node in proto.graph.node} | {""}
    opsets = sorted((o.domain, o.version) for o in proto.opset_import if (o.domain or "") in used)
    del proto.opset_import[:]
    for domain, version in opsets:
        proto.opset_import.add(domain=domain, version=version)


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
