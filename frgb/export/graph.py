"""The whole model as one ONNX graph with the fr_regressor_v2 contract.

    features (N, 6) float32, codec (N, 8) float32  ->  score (N,) float32, opset 17

(the codec block is as wide as the model's layout: 8 for the card, 14 for fork-v2; with
`Inputs.ONE` the graph has one input `features` (N, 6 + codec width), features first, sliced
inside the graph). Inside: the features the caller passes are mapped to the raw features the
model was trained on (identity by default; with `--input-scaler`, x * std + mean of an existing
sidecar), the codec block is guarded if the model guards it (frgb.contract.guard_codec), the
trees run on [features | codec] with thresholds folded exactly into that input domain, the
teacher prior runs in float64 with that map folded into its first Gemm
(frgb/export/teacher_onnx.py), and their sum is clipped to [0, 100]:

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

from frgb.contract import N_FEATURES, OPSET, OUTPUT_SCORE, SCORE_RANGE, Layout, guard_weights
from frgb.errors import FrgbError
from frgb.export.teacher_onnx import teacher_graph
from frgb.export.thresholds import raw_domain_booster
from frgb.export.trees_onnx import RawTrees
from frgb.model import FrgbRegressor
from frgb.targets import CONVERTER_OPTIONS, DEFAULT_OPTIONS, Inputs, Strategy, Target

GRAPH_NAME = "frgb"


@dataclass
class Graph:
    """A fitted model and the feature scaling its graph's callers apply (identity by default)."""

    model: FrgbRegressor
    input_mean: np.ndarray = field(default_factory=lambda: np.zeros(N_FEATURES))
    input_std: np.ndarray = field(default_factory=lambda: np.ones(N_FEATURES))
    inputs: Inputs = Inputs.TWO
    OUTPUTS: ClassVar[tuple[str, ...]] = (OUTPUT_SCORE,)

    def fit(self, *args):
        """Nothing to learn (skl2onnx recognises models by their `fit`)."""
        return self

    @property
    def layout(self) -> Layout:
        return self.model.layout_

    @property
    def guard(self) -> tuple[int, ...] | None:
        """The trusted encoder slots of the codec guard, or None if the model has no guard."""
        return self.model.trusted_slots_ if self.model.guarded else None

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
    """The trees' input [features | codec] (N, 6 + codec width) float32."""
    return _concat(scope, container, *operator.inputs)


def _concat(scope, container, features, codec):
    x = scope.declare_local_variable("x", FloatTensorType([None, N_FEATURES + codec.type.shape[1]]))
    container.add_node("Concat", [features.full_name, codec.full_name], x.full_name, axis=1,
                       name=scope.get_unique_operator_name("Concat"))
    return x


def _constant(scope, container, name: str, value: np.ndarray) -> str:
    """An initializer holding `value` (float32 or int64); its name."""
    value = np.asarray(value)
    kind = TensorProto.INT64 if value.dtype == np.int64 else TensorProto.FLOAT
    full = scope.get_unique_variable_name(name)
    container.add_initializer(full, kind, list(value.shape), value.ravel().tolist())
    return full


def _node(scope, container, op: str, inputs: list[str], name: str, width: int | None, **attrs):
    """Add one float32 node; its output variable ((N, width), or (N, 1) if width is None)."""
    out = scope.declare_local_variable(name, FloatTensorType([None, 1 if width is None else width]))
    container.add_node(op, inputs, out.full_name, name=scope.get_unique_operator_name(op), **attrs)
    return out


def _columns(scope, container, x, start: int, stop: int, name: str):
    """Columns start..stop of x (Slice, on libvmaf's allowlist)."""
    bounds = [_constant(scope, container, f"{name}_{k}", np.array([v], dtype=np.int64))
              for k, v in (("starts", start), ("ends", stop), ("axes", 1))]
    return _node(scope, container, "Slice", [x.full_name, *bounds], name, stop - start)


def guarded_codec(scope, container, codec, trusted: tuple[int, ...], layout: Layout):
    """The codec guard in the graph, float32 op for op as frgb.contract.guard_codec computes it:
    g = Clip(codec @ trusted_weights, 0, 1); codec' = codec * g + blind * (1 - g)."""
    width = layout.codec_width
    weights = _constant(scope, container, "guard_weights", guard_weights(trusted, layout))
    zero, one = (_constant(scope, container, n, np.array(v, dtype=np.float32)) for n, v in (("zero", 0.0), ("one", 1.0)))
    blind = _constant(scope, container, "blind", np.array(layout.codec_blind, dtype=np.float32)[None, :])
    hits = _node(scope, container, "MatMul", [codec.full_name, weights], "guard_hits", None)
    g = _node(scope, container, "Clip", [hits.full_name, zero, one], "guard", None)
    rest = _node(scope, container, "Sub", [one, g.full_name], "guard_rest", None)
    kept = _node(scope, container, "Mul", [codec.full_name, g.full_name], "codec_kept", width)
    blinded = _node(scope, container, "Mul", [blind, rest.full_name], "codec_blinded", width)
    return _node(scope, container, "Add", [kept.full_name, blinded.full_name], "codec_guarded", width)


def graph_inputs(scope, operator, container, graph):
    """(features (N, 6), codec (N, codec width), x = the trees' input [features | codec]) as graph
    variables: the two inputs, or the halves of the one input; the codec block guarded if the
    model guards it. The card's two-input graph without guard is built exactly as before."""
    if graph.inputs is Inputs.ONE:
        whole = operator.inputs[0]
        total = whole.type.shape[1]
        features = _columns(scope, container, whole, 0, N_FEATURES, "features_part")
        codec = _columns(scope, container, whole, N_FEATURES, total, "codec_part")
    else:
        features, codec = operator.inputs
    if graph.guard is None:
        return features, codec, (whole if graph.inputs is Inputs.ONE else concat_inputs(scope, operator, container))
    codec = guarded_codec(scope, container, codec, graph.guard, graph.layout)
    return features, codec, _concat(scope, container, features, codec)


def tree_sum(trees: RawTrees, x, options: dict, opv: int):
    """Algebra node: the sum of the trees (N, 1) float32."""
    return OnnxSubEstimator(trees, x, op_version=opv,
                            options={"target": options["target"], "strategy": options["strategy"]})


def prior_score(scope, operator, container, graph, output_names=None, features=None):
    """Algebra node: the teacher's score (N, 1) of the caller's features (the graph variable
    `features`, by default the first input), computed in float64 and rounded to float32 once it
    is clipped to [0, 100]; None without a prior.

    The caller's scaling (identity unless --input-scaler) is folded into the prior's first Gemm."""
    if graph.model.prior_ is None:
        return None
    opv = container.target_opset
    features = operator.inputs[0] if features is None else features
    prior = teacher_graph(graph.model.prior_, features, opv, input_mean=graph.input_mean,
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


def score_shapes(operator) -> None:
    """Shape calculator of the graphs: every output float32 (N,)."""
    for output in operator.outputs:
        output.type = FloatTensorType([operator.inputs[0].get_first_dimension()])


def converter_options(container, graph) -> dict:
    return container.get_options(graph, DEFAULT_OPTIONS)


def _convert(scope, operator, container) -> None:
    graph: Graph = operator.raw_operator
    opv = container.target_opset
    features, _, x = graph_inputs(scope, operator, container, graph)
    total = tree_sum(graph.raw_trees(), x, converter_options(container, graph), opv)
    prior = prior_score(scope, operator, container, graph, features=features)
    if prior is not None:
        total = OnnxAdd(total, prior, op_version=opv)
    add_output(scope, container, clip_score(total, opv), operator.outputs[0])


update_registered_converter(Graph, "FrgbGraph", score_shapes, _convert, options=CONVERTER_OPTIONS)


def to_onnx(graph, target: Target | str = Target.ONNXML, strategy: Strategy | str = Strategy.AUTO) -> onnx.ModelProto:
    """Convert a `Graph` (or an `IntervalGraph`) with skl2onnx; the result has a fixed graph name
    so its bytes are reproducible."""
    try:
        target, strategy = Target(target), Strategy(strategy)
    except ValueError as e:
        raise FrgbError(f"{e}; targets: {', '.join(t.value for t in Target)}, "
                        f"strategies: {', '.join(s.value for s in Strategy)}") from None
    proto = convert_sklearn(
        graph,
        initial_types=[(name, FloatTensorType([None, width])) for name, width in graph.layout.input_specs(graph.inputs)],
        final_types=[(name, FloatTensorType([None])) for name in graph.OUTPUTS],
        target_opset={"": OPSET, "ai.onnx.ml": 3},
        options={id(graph): {"target": target.value, "strategy": strategy.value}},
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
