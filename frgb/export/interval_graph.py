"""An interval model as one ONNX graph: the point graph's inputs, three outputs.

    features (N, 6) float32, codec (N, 8) float32  ->  score, lower, upper (N,) float32, opset 17

(or the layout's width and one input, as for the point graph). Built from the parts of
frgb.export.graph: the inputs (one Concat; Slices and the codec guard where needed), the teacher prior once (float64), and
three tree ensembles (point, lower and upper quantile), each with its thresholds folded into the
raw float32 input domain and compiled for the chosen `target`. Then, in float32 (the prior is
computed in float64 and rounded once clipped, as in the point graph):

    score = clip(prior + trees, 0, 100)
    lower = Min(clip(clip(prior + lower trees, 0, 100) - codec @ margin_weights, 0, 100), score)
    upper = Max(clip(clip(prior + upper trees, 0, 100) + codec @ margin_weights, 0, 100), score)

so lower <= score <= upper on every row by construction (Min/Max, no comparison ops: the libvmaf
target stays on libvmaf's allowlist).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from skl2onnx import get_model_alias, update_registered_converter
from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxMatMul, OnnxMax, OnnxMin, OnnxSub
from skl2onnx.common.data_types import FloatTensorType

from frgb.contract import INTERVAL_OUTPUTS, N_FEATURES
from frgb.contract import Layout
from frgb.export.graph import (
    Graph, add_output, clip_score, converter_options, graph_inputs, prior_score, score_shapes, tree_sum,
)
from frgb.export.trees_onnx import RawTrees
from frgb.intervals import IntervalRegressor
from frgb.targets import CONVERTER_OPTIONS, Inputs


@dataclass
class IntervalGraph:
    """A fitted interval model and the feature scaling its graph's callers apply."""

    model: IntervalRegressor
    input_mean: np.ndarray = field(default_factory=lambda: np.zeros(N_FEATURES))
    input_std: np.ndarray = field(default_factory=lambda: np.ones(N_FEATURES))
    inputs: Inputs = Inputs.TWO
    OUTPUTS: ClassVar[tuple[str, ...]] = INTERVAL_OUTPUTS
    _raw_trees: list[RawTrees] | None = field(default=None, init=False, repr=False)

    def fit(self, *args):
        """Nothing to learn (skl2onnx recognises models by their `fit`)."""
        return self

    def part(self, model) -> Graph:
        """The point graph of one of the three models, with this graph's input scaling and inputs."""
        return Graph(model, self.input_mean, self.input_std, self.inputs)

    @property
    def layout(self) -> Layout:
        return self.model.point_.layout_

    @property
    def guard(self) -> tuple[int, ...] | None:
        return self.part(self.model.point_).guard

    @property
    def parts(self) -> list[Graph]:
        return [self.part(m) for m in (self.model.point_, self.model.lower_, self.model.upper_)]

    def outputs(self, features, codec) -> list[np.ndarray]:
        """The Python reference for (score, lower, upper) of graph inputs."""
        codec = np.asarray(codec, dtype=np.float32).astype(np.float64)
        X = np.hstack([self.parts[0].raw_features(features), codec])
        return list(self.model.predict_interval(X))

    def all_raw_trees(self) -> list[RawTrees]:
        """The trees of point, lower and upper model, thresholds folded (computed once: folding is slow)."""
        if self._raw_trees is None:
            self._raw_trees = [p.raw_trees() for p in self.parts]
        return self._raw_trees


def _convert(scope, operator, container) -> None:
    graph: IntervalGraph = operator.raw_operator
    opv = container.target_opset
    options = converter_options(container, graph)
    point = graph.parts[0]
    point_trees, lower_trees, upper_trees = graph.all_raw_trees()
    features, codec_input, x = graph_inputs(scope, operator, container, graph)

    def shared(name: str, make):
        """A named (N, 1) float32 variable computed once by `make(output_names)`, read by several nodes."""
        var = scope.declare_local_variable(name, FloatTensorType([None, 1]))
        make([var]).add_to(scope, container)
        return var

    prior = None
    if point.model.prior_ is not None:
        prior = shared("prior", lambda out: prior_score(scope, operator, container, point, output_names=out,
                                                       features=features))

    def bounded(trees: RawTrees, output_names=None):
        total = tree_sum(trees, x, options, opv)
        if prior is not None:
            total = OnnxAdd(total, prior, op_version=opv)
        return clip_score(total, opv, output_names=output_names)

    score = shared("score32", lambda out: bounded(point_trees, out))
    weights = graph.model.margin_weights_[:, None].astype(np.float32)
    margin = shared("margin", lambda out: OnnxMatMul(codec_input, weights, op_version=opv, output_names=out))
    low = OnnxMin(clip_score(OnnxSub(bounded(lower_trees), margin, op_version=opv), opv), score, op_version=opv)
    high = OnnxMax(clip_score(OnnxAdd(bounded(upper_trees), margin, op_version=opv), opv), score, op_version=opv)
    for node, output in zip((score, low, high), operator.outputs):
        add_output(scope, container, node, output)


def _parse(scope, model, inputs, custom_parsers=None):
    """skl2onnx's default parser gives a model one output; this graph has three."""
    operator = scope.declare_local_operator(get_model_alias(type(model)), model)
    operator.inputs = inputs
    operator.outputs = [scope.declare_local_variable(name, FloatTensorType()) for name in model.OUTPUTS]
    return operator.outputs


update_registered_converter(IntervalGraph, "FrgbIntervalGraph", score_shapes, _convert, parser=_parse,
                            options=CONVERTER_OPTIONS)
