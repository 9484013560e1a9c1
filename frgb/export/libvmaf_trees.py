"""LightGBM trees compiled to the default-domain ops that libvmaf's DNN loader accepts.

There is no Less/Greater/Equal/Where on libvmaf's allowlist, so a split `x <= t` is computed
from arithmetic that is exact in float32: `right = Clip(x * 2^75 - t * 2^75, 0, 2^-74)`.
Multiplying by a power of two is exact (inputs below 9e15), the difference of two float32
values is never rounded to the wrong sign, and 2^75 lifts even the smallest subnormal
difference (2^-149) to 2^-74, the Clip's upper bound (a normal float32), so `right` is exactly
0 (x <= t) or 2^-74 (x > t). Whatever consumes it carries the factor 2^74 in its constants
(path matrix, traversal steps), so every product is exactly 0 or +-1 times an integer. (The
input is scaled once per row, the thresholds are stored scaled.)

Two ways to evaluate the trees from those indicators (Hummingbird's two families):

- `gemm`: every distinct split (feature, threshold) of the trees at once (one Gemm selects
  each split's input column and subtracts its threshold; trees share most of their splits, so
  there are far fewer distinct splits than splits), then a GEMM with a path matrix A (splits x
  leaves; +1 where the leaf lies right of the split, -1 where left): the one leaf whose path
  matches has `right @ A + 1 - n_right = 1`, every other leaf <= 0, and Relu keeps only it; a
  last product sums the leaf values. The bias rides on an always-true split. A model whose
  path matrix stays small (GEMM_BUDGET) is one group: plain 2-D Gemm/Relu/MatMul, the fewest
  nodes for one row; larger models are split into groups of trees evaluated by batched GEMMs.
- `traversal`: all trees walk down together, one level per step: Gather the node's feature,
  threshold and children, GatherND the row's value, step left or right. Cost per row:
  depth x trees gathers.

`auto` picks `gemm` unless the trees are very large (see `choose_strategy`).

Missing values: NaN (or an infinite value) in any input makes the score NaN; the tests pin
this for NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from onnx import TensorProto

#: Inputs and thresholds are scaled by 2^75: any non-zero float32 difference becomes >= RIGHT.
SATURATE = np.float32(2.0**75)
#: The indicator of `x > t`: Clip(scaled difference, 0, RIGHT) is exactly 0 or RIGHT.
RIGHT = np.float32(2.0**-74)
#: What the indicator's consumers multiply their constants by, so that RIGHT counts as 1.
RIGHT_SCALE = np.float32(2.0**74)
#: Largest path matrix ((distinct splits + 1) x leaves) of one group in the `gemm` strategy:
#: a model within it is evaluated by 2-D GEMMs (fewest nodes, measured fastest for one row);
#: larger models are grouped (measured in benchmarks/bench_graphs.py).
GEMM_BUDGET = 1 << 15
#: Largest tree (in splits) that `auto` evaluates with GEMM.
MAX_GEMM_SPLITS = 64
#: Threshold of padding and leaf nodes: every finite or infinite input goes the same way.
PAD_THRESHOLD = np.float32(np.finfo(np.float32).max)


class Strategy(str, Enum):
    AUTO = "auto"
    GEMM = "gemm"
    TRAVERSAL = "traversal"


@dataclass
class Tree:
    """One tree as arrays: split nodes (feature, threshold, children) and leaf values.

    Children are node ids: i >= 0 a split, ~i (negative) leaf i, as in LightGBM's dump."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_value: np.ndarray

    @property
    def n_splits(self) -> int:
        return len(self.feature)

    def depth(self) -> int:
        def walk(node: int) -> int:
            return 0 if node < 0 else 1 + max(walk(self.left[node]), walk(self.right[node]))

        return walk(0) if self.n_splits else 0


def trees_of(booster) -> list[Tree]:
    """Trees of a LightGBM booster, from its JSON dump (thresholds as stored, float64)."""
    trees = []
    for info in booster.dump_model()["tree_info"]:
        feature, threshold, left, right, leaves = [], [], [], [], {}

        def visit(node: dict) -> int:
            if "leaf_value" in node or "split_index" not in node:
                index = node.get("leaf_index", 0)
                leaves[index] = node.get("leaf_value", 0.0)
                return ~index
            if node["decision_type"] != "<=":
                raise ValueError(f"split {node['decision_type']!r} is not supported (numerical <= only)")
            i = len(feature)
            feature.append(node["split_feature"])
            threshold.append(float(node["threshold"]))
            left.append(0)
            right.append(0)
            left[i] = visit(node["left_child"])
            right[i] = visit(node["right_child"])
            return i

        visit(info["tree_structure"])
        values = np.array([leaves[k] for k in range(len(leaves))], dtype=np.float64)
        trees.append(Tree(np.array(feature, dtype=np.int64), np.array(threshold), np.array(left, dtype=np.int64),
                          np.array(right, dtype=np.int64), values))
    return trees


def choose_strategy(trees: list[Tree]) -> Strategy:
    """GEMM's path matrix grows with splits x leaves per tree, traversal's cost with depth.
    Measured (benchmarks/bench_graphs.py, reports/graphs.md), GEMM was faster in single-row
    latency and in throughput for every model size frgb fits (up to 200 trees of 15 leaves);
    traversal is kept for trees so large that their path matrices would not be small."""
    return Strategy.GEMM if max(t.n_splits for t in trees) <= MAX_GEMM_SPLITS else Strategy.TRAVERSAL


class _Emitter:
    """Adds nodes and constants to a skl2onnx container under unique names."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def const(self, name: str, value: np.ndarray) -> str:
        value = np.asarray(value)
        kind = {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64}[value.dtype.type]
        full = self.scope.get_unique_variable_name(name)
        self.container.add_initializer(full, kind, list(value.shape), value.ravel().tolist())
        return full

    def node(self, op: str, inputs: list[str], name: str, output: str | None = None, **attrs) -> str:
        out = output or self.scope.get_unique_variable_name(name)
        self.container.add_node(op, inputs, out, name=self.scope.get_unique_operator_name(op), **attrs)
        return out

    def go_right(self, x: str, threshold: str) -> str:
        """RIGHT where x > threshold, 0.0 where x <= threshold (exact), for x and threshold both
        already multiplied by 2^75 (see `scaled_input` and `scaled_thresholds`)."""
        return self.saturate(self.node("Sub", [x, threshold], "diff"))

    def saturate(self, diff: str) -> str:
        """Clip(diff, 0, RIGHT) of a difference scaled by 2^75: exactly 0 or RIGHT."""
        zero, right = self.const("zero", np.array(np.float32(0))), self.const("right_value", np.array(RIGHT))
        return self.node("Clip", [diff, zero, right], "right")

    def scaled_input(self, x: str) -> str:
        return self.node("Mul", [x, self.const("saturate", np.array(SATURATE))], "x_scaled")


def scaled_thresholds(threshold) -> np.ndarray:
    """Thresholds times 2^75 (exact: a power of two), padding kept at the float32 maximum."""
    t = np.asarray(threshold, dtype=np.float32)
    with np.errstate(over="ignore"):
        return np.where(t == PAD_THRESHOLD, PAD_THRESHOLD, t * SATURATE).astype(np.float32)


def _groups(trees: list[Tree]) -> list[list[Tree]]:
    """Consecutive trees packed into groups whose path matrix (distinct splits + 1) x leaves stays
    within GEMM_BUDGET entries; a model that fits in one group needs no batched GEMM."""
    groups, splits, leaves = [[]], set(), 0
    for tree in trees:
        more = splits | set(_split_keys(tree))
        if groups[-1] and (len(more) + 1) * (leaves + len(tree.leaf_value)) > GEMM_BUDGET:
            groups.append([])
            more, leaves = set(_split_keys(tree)), 0
        groups[-1].append(tree)
        splits, leaves = more, leaves + len(tree.leaf_value)
    return groups


def _split_keys(tree: Tree) -> list[tuple[int, float]]:
    """(feature, float32 threshold) of each split: equal keys are one comparison in the graph."""
    return list(zip(tree.feature.tolist(), tree.threshold.astype(np.float32).tolist()))


def _gemm(e: _Emitter, x: str, n_features: int, trees: list[Tree], out: str) -> None:
    groups = _groups(trees)
    keys = [sorted(set().union(*(_split_keys(t) for t in g))) for g in groups]
    width = max(len(k) for k in keys) + 1  # distinct splits per group, the last one always true (carries the bias)
    n_leaf = max(sum(len(t.leaf_value) for t in g) for g in groups)
    n_groups = len(groups)
    select = np.zeros((n_groups, width, n_features), dtype=np.float32)
    offset = np.zeros((n_groups, width), dtype=np.float32)  # -threshold * 2^75; padding splits: 0 (never right)
    offset[:, -1] = SATURATE  # 0 * x + 2^75: exactly RIGHT after the Clip
    paths = np.zeros((n_groups, width, n_leaf), dtype=np.float32)
    paths[:, -1, :] = -1.0  # padding leaves: never chosen
    values = np.zeros((n_groups, n_leaf, 1), dtype=np.float32)
    for g, (group, group_keys) in enumerate(zip(groups, keys)):
        column = {key: i for i, key in enumerate(group_keys)}
        for i, (feature, threshold) in enumerate(group_keys):
            select[g, i, feature] = 1.0
            offset[g, i] = -scaled_thresholds([threshold])[0]
        first = 0
        for tree in group:
            split_column = [column[key] for key in _split_keys(tree)]
            values[g, first:first + len(tree.leaf_value), 0] = tree.leaf_value
            if tree.n_splits == 0:
                paths[g, -1, first] = 1.0

            def walk(node: int, path: list[tuple[int, float]]) -> None:
                if node < 0:
                    leaf = first + ~node
                    paths[g, -1, leaf] = 1.0 - sum(sign > 0 for _, sign in path)
                    for split, sign in path:  # += : a split may repeat on a path
                        paths[g, split_column[split], leaf] += sign
                    return
                walk(tree.left[node], path + [(node, -1.0)])
                walk(tree.right[node], path + [(node, 1.0)])

            if tree.n_splits:
                walk(0, [])
            first += len(tree.leaf_value)
    # (rows, splits) = 2^75 * X @ select^T - 2^75 * threshold: one Gemm picks every distinct split's
    # input and subtracts its threshold. The product is exact (one 1 per row of `select`, the rest 0;
    # inputs must be finite, as 0 * inf is NaN) and the subtraction rounds once, keeping the sign.
    diff = e.node("Gemm", [x, e.const("select", select.reshape(-1, n_features)), e.const("offset", offset.reshape(-1))],
                  "diff", alpha=float(SATURATE), transB=1)
    right = e.saturate(diff)
    # Leaf scores: right @ paths (exactly 1 for the leaf whose path matches, <= 0 for every other),
    # Relu keeps that leaf, and a last product sums the leaf values. One group: plain 2-D GEMMs.
    # Several: per group (groups, rows, splits) @ (groups, splits, leaves), then a sum over groups.
    paths *= RIGHT_SCALE
    if n_groups == 1:
        chosen = e.node("Relu", [e.node("Gemm", [right, e.const("paths", paths[0])], "leaf_score")], "chosen")
        e.node("MatMul", [chosen, e.const("leaf_value", values[0])], "trees", output=out)
        return
    per_row = e.node("Reshape", [right, e.const("shape", np.array([-1, n_groups, width], dtype=np.int64))], "per_row")
    per_group = e.node("Transpose", [per_row], "per_group", perm=[1, 0, 2])
    chosen = e.node("Relu", [e.node("MatMul", [per_group, e.const("paths", paths)], "leaf_score")], "chosen")
    group_values = e.node("MatMul", [chosen, e.const("leaf_value", values)], "group_value")
    e.node("ReduceSum", [group_values, e.const("group_axis", np.array([0], dtype=np.int64))], "trees",
           output=out, keepdims=0)


def _traversal(e: _Emitter, x: str, trees: list[Tree], out: str) -> None:
    # One flat table of nodes: splits then leaves of tree 0, then of tree 1, ... Leaves loop
    # back to themselves, so extra steps for shallow trees change nothing.
    feature, threshold, left, right, value, roots = [], [], [], [], [], []
    for tree in trees:
        base, n_split = len(feature), tree.n_splits
        ids = lambda child: base + (child if child >= 0 else n_split + ~child)  # noqa: E731
        roots.append(base if n_split else base + n_split)
        feature += tree.feature.tolist()
        threshold += tree.threshold.astype(np.float32).tolist()
        left += [ids(c) for c in tree.left]
        right += [ids(c) for c in tree.right]
        value += [0.0] * n_split
        for i, leaf_value in enumerate(tree.leaf_value):
            feature.append(0)
            threshold.append(PAD_THRESHOLD)
            left.append(base + n_split + i)
            right.append(base + n_split + i)
            value.append(leaf_value)
    depth = max(t.depth() for t in trees)
    left_f = np.array(left, dtype=np.float32)
    f_feature = e.const("node_feature", np.array(feature, dtype=np.int64))
    f_threshold = e.const("node_threshold", scaled_thresholds(threshold))
    f_left = e.const("node_left", left_f)
    step = (np.array(right, dtype=np.float32) - left_f) * RIGHT_SCALE  # go_right is 0 or RIGHT: exact steps
    f_step = e.const("node_step", step)
    # Level 0: every row starts at the roots, whose features are known constants.
    roots = np.array(roots, dtype=np.int64)
    picked = e.node("Gather", [x, e.const("root_feature", np.array(feature, dtype=np.int64)[roots])], "picked", axis=1)
    right0 = e.go_right(picked, e.const("root_threshold", scaled_thresholds(threshold)[roots]))
    step0 = e.node("Mul", [right0, e.const("root_step", step[roots])], "step")
    node = e.node("Cast", [e.node("Add", [step0, e.const("root_left", left_f[roots])], "nodef")], "node",
                  to=TensorProto.INT64)
    for _ in range(depth - 1):
        feat = e.node("Unsqueeze", [e.node("Gather", [f_feature, node], "feat"),
                                    e.const("last_axis", np.array([-1], dtype=np.int64))], "feat_index")
        value_x = e.node("GatherND", [x, feat], "value", batch_dims=1)
        go = e.go_right(value_x, e.node("Gather", [f_threshold, node], "threshold"))
        nxt = e.node("Add", [e.node("Gather", [f_left, node], "left"),
                             e.node("Mul", [go, e.node("Gather", [f_step, node], "stepsize")], "step")], "nodef")
        node = e.node("Cast", [nxt], "node", to=TensorProto.INT64)
    leaf = e.node("Gather", [e.const("node_value", np.array(value, dtype=np.float32)), node], "leaf")
    e.node("ReduceSum", [leaf, e.const("tree_axis", np.array([1], dtype=np.int64))], "trees", output=out, keepdims=1)


def convert_libvmaf_trees(scope, operator, container, strategy: str = "auto") -> None:
    """skl2onnx converter body: (N, F) float32 -> (N, 1) float32 sum of the trees."""
    trees = trees_of(operator.raw_operator.booster_)
    chosen = Strategy(strategy)
    if chosen is Strategy.AUTO:
        chosen = choose_strategy(trees)
    emitter, x = _Emitter(scope, container), operator.inputs[0]
    if chosen is Strategy.GEMM:
        _gemm(emitter, x.full_name, x.type.shape[1], trees, operator.outputs[0].full_name)
    else:
        _traversal(emitter, emitter.scaled_input(x.full_name), trees, operator.outputs[0].full_name)
