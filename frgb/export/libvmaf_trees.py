"""LightGBM trees compiled to the default-domain ops that libvmaf's DNN loader accepts.

There is no Less/Greater/Equal/Where on libvmaf's allowlist, so a split `x <= t` is computed
from arithmetic that is exact in float32: `right = Clip((x - t) * 2^75 * 2^75, 0, 1)`. The
difference of two float32 values is never rounded to the wrong sign, and scaling by 2^150
lifts even the smallest subnormal difference (2^-149) above 1, so `right` is exactly 0 or 1.
(Two multiplications, because 2^150 itself overflows float32.)

Two ways to evaluate the trees from those indicators (Hummingbird's two families):

- `gemm`: every split of every tree at once, then a GEMM with a path matrix A (splits x
  leaves; +1 where the leaf lies right of the split, -1 where left): the one leaf whose path
  matches has `right @ A + 1 - n_right = 1`, every other leaf <= 0, and Relu keeps only it.
  Small trees are packed block-diagonally, a few per GEMM.
- `traversal`: all trees walk down together, one level per step: Gather the node's feature,
  threshold and children, GatherND the row's value, step left or right. Cost per row:
  depth x trees gathers.

`auto` picks `gemm` unless the trees are very large (see `choose_strategy`).

Missing values: NaN in the codec block (the only input that reaches the trees and not the
prior) makes `right` NaN and the score NaN; the tests pin this.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from onnx import TensorProto

#: Two factors of 2^75 make any non-zero float32 difference at least 2 in magnitude.
SATURATE = np.float32(2.0**75)
#: Splits per GEMM in the `gemm` strategy: small trees are packed block-diagonally into one
#: matrix of about this many rows, so a single row costs few GEMM calls (measured in
#: benchmarks/bench_graphs.py).
GROUP_SPLITS = 32
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
        """1.0 where x > threshold, 0.0 where x <= threshold (exact)."""
        diff = self.node("Sub", [x, threshold], "diff")
        big = self.const("saturate", np.array(SATURATE))
        scaled = self.node("Mul", [self.node("Mul", [diff, big], "scaled"), big], "scaled")
        zero, one = self.const("zero", np.array(np.float32(0))), self.const("one", np.array(np.float32(1)))
        return self.node("Clip", [scaled, zero, one], "right")


def _gemm(e: _Emitter, x: str, trees: list[Tree], out: str) -> None:
    n_split = max(1, max(t.n_splits for t in trees))
    n_leaf = max(len(t.leaf_value) for t in trees)
    group = max(1, GROUP_SPLITS // n_split)  # trees per GEMM: block-diagonal path matrix
    n_groups = -(-len(trees) // group)
    n_trees = n_groups * group  # padded with empty trees, whose leaves are never chosen
    feature = np.zeros((n_trees, n_split), dtype=np.int64)
    threshold = np.full((n_trees, n_split), PAD_THRESHOLD, dtype=np.float32)
    paths = np.zeros((n_groups, group * n_split, group * n_leaf), dtype=np.float32)
    bias = np.full((n_groups, 1, group * n_leaf), -1.0, dtype=np.float32)
    values = np.zeros((n_groups, group * n_leaf, 1), dtype=np.float32)
    for k, tree in enumerate(trees):
        g, rows, cols = k // group, (k % group) * n_split, (k % group) * n_leaf
        feature[k, : tree.n_splits] = tree.feature
        threshold[k, : tree.n_splits] = tree.threshold.astype(np.float32)
        values[g, cols : cols + len(tree.leaf_value), 0] = tree.leaf_value
        if tree.n_splits == 0:
            bias[g, 0, cols] = 1.0
            continue

        def walk(node: int, path: list[tuple[int, float]]) -> None:
            if node < 0:
                leaf = cols + ~node
                for split, sign in path:
                    paths[g, rows + split, leaf] = sign
                bias[g, 0, leaf] = 1.0 - sum(sign > 0 for _, sign in path)
                return
            walk(tree.left[node], path + [(node, -1.0)])
            walk(tree.right[node], path + [(node, 1.0)])

        walk(0, [])
    picked = e.node("Gather", [x, e.const("split_feature", feature.ravel())], "picked", axis=1)
    right = e.go_right(picked, e.const("split_threshold", threshold.ravel()))
    # Group-major (groups, rows, splits): one GEMM per group of trees over all rows.
    shape = np.array([-1, n_groups, group * n_split], dtype=np.int64)
    per_row = e.node("Reshape", [right, e.const("shape", shape)], "per_row")
    per_group = e.node("Transpose", [per_row], "per_group", perm=[1, 0, 2])
    score = e.node("Add", [e.node("MatMul", [per_group, e.const("paths", paths)], "path_score"),
                           e.const("leaf_bias", bias)], "leaf_score")
    chosen = e.node("Relu", [score], "chosen")
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
    f_threshold = e.const("node_threshold", np.array(threshold, dtype=np.float32))
    f_left = e.const("node_left", left_f)
    f_step = e.const("node_step", np.array(right, dtype=np.float32) - left_f)
    # Level 0: every row starts at the roots, whose features are known constants.
    roots = np.array(roots, dtype=np.int64)
    picked = e.node("Gather", [x, e.const("root_feature", np.array(feature, dtype=np.int64)[roots])], "picked", axis=1)
    right0 = e.go_right(picked, e.const("root_threshold", np.array(threshold, dtype=np.float32)[roots]))
    step0 = e.node("Mul", [right0, e.const("root_step", (np.array(right, dtype=np.float32) - left_f)[roots])], "step")
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
    build = _gemm if chosen is Strategy.GEMM else _traversal
    build(_Emitter(scope, container), operator.inputs[0].full_name, trees, operator.outputs[0].full_name)
