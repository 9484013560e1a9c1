"""LightGBM trees compiled to the default-domain ops that libvmaf's DNN loader accepts.

There is no Less/Greater/Equal/Where on libvmaf's allowlist, so a split `x <= t` is computed
from arithmetic that is exact in float32: `right = Clip(x * 2^75 - t * 2^75, 0, 2^-74)`.
Multiplying by a power of two is exact (inputs below 9e15), the difference of two float32
values is never rounded to the wrong sign, and 2^75 lifts even the smallest subnormal
difference (2^-149) to 2^-74, the Clip's upper bound (a normal float32), so `right` is exactly
0 (x <= t) or 2^-74 (x > t). Whatever consumes it carries the factor 2^74 in its constants
(code weights, path matrix, traversal steps), so every product is exactly 0 or an integer.
(The input is scaled once per row, the thresholds are stored scaled.)

Three ways to evaluate the trees from those indicators:

- `table`: one Gemm computes the indicator of every distinct split (feature, threshold) of
  the model once (trees share most of their splits: the shipped model has 54 distinct among
  350), one MatMul turns them into each tree's split pattern as an integer (bit s = split s
  goes right), and a Gather looks each tree's leaf up in a table of 2^splits entries per tree;
  a ReduceSum adds the trees. Fewest nodes and no per-leaf work; the table grows as 2^splits.
- `gemm`: every split of every tree at once (one Gemm selects each split's input column and
  subtracts its threshold), then a GEMM with a path matrix A (splits x leaves; +1 where the
  leaf lies right of the split, -1 where left): the one leaf whose path matches has
  `right @ A + 1 - n_right = 1`, every other leaf <= 0, and Relu keeps only it. Small trees
  are packed block-diagonally, a few per GEMM; the bias rides on an always-true split.
- `traversal`: all trees walk down together, one level per step: Gather the node's feature,
  threshold and children, GatherND the row's value, step left or right. Cost per row:
  depth x trees gathers.

`auto` picks `table` for trees of up to MAX_TABLE_SPLITS splits, then `gemm`, and `traversal`
for very large trees (see `choose_strategy`).

Missing values: NaN (or an infinite value) in a feature makes the score NaN (the prior
propagates it; the tests pin this for NaN). Elsewhere it gives an unspecified score: `gemm`
propagates it, `table` clips the lookup into its table, and `traversal` fails to run
(onnxruntime refuses the out-of-range Gather). Do not pass NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from frgb.targets import Strategy

#: Inputs and thresholds are scaled by 2^75: any non-zero float32 difference becomes >= RIGHT.
SATURATE = np.float32(2.0**75)
#: The indicator of `x > t`: Clip(scaled difference, 0, RIGHT) is exactly 0 or RIGHT.
RIGHT = np.float32(2.0**-74)
#: What the indicator's consumers multiply their constants by, so that RIGHT counts as 1.
RIGHT_SCALE = np.float32(2.0**74)
#: Splits per GEMM in the `gemm` strategy: small trees are packed block-diagonally into one
#: matrix of about this many rows, so a single row costs few GEMM calls (measured in
#: benchmarks/bench_graphs.py).
GROUP_SPLITS = 32
#: Largest tree (in splits) that `auto` evaluates with GEMM.
MAX_GEMM_SPLITS = 64
#: Largest tree (in splits) that `auto` evaluates with a table: 2^splits entries per tree.
MAX_TABLE_SPLITS = 10
#: Table indices (trees x 2^splits) must stay exact float32 integers.
MAX_TABLE_SIZE = 1 << 24
#: Threshold of padding and leaf nodes: every finite or infinite input goes the same way.
PAD_THRESHOLD = np.float32(np.finfo(np.float32).max)


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
    """A table holds 2^splits leaves per tree, GEMM's path matrix grows with splits x leaves,
    traversal's cost with depth. Measured (benchmarks/bench_graphs.py, reports/graphs.md), the
    table was the fastest for the shipped model (50 trees of 8 leaves) at one row and at 65,536,
    and GEMM faster than traversal for every model size frgb fits (up to 200 trees of 15 leaves);
    traversal is kept for trees so large that their path matrices would not be small."""
    splits = max(t.n_splits for t in trees)
    if splits <= MAX_TABLE_SPLITS and len(trees) << splits <= MAX_TABLE_SIZE:
        return Strategy.TABLE
    return Strategy.GEMM if splits <= MAX_GEMM_SPLITS else Strategy.TRAVERSAL


class _Emitter:
    """Adds nodes and constants to a skl2onnx container under unique names."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def const(self, name: str, value: np.ndarray) -> str:
        value = np.asarray(value)
        kinds = {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64, np.int32: TensorProto.INT32}
        kind = kinds[value.dtype.type]
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


def _split_keys(tree: Tree) -> list[tuple[int, float]]:
    """(feature, float32 threshold) of each split: equal keys are one comparison in the graph."""
    return list(zip(tree.feature.tolist(), tree.threshold.astype(np.float32).tolist()))


def _distinct_splits(e: _Emitter, x: str, n_features: int, keys: list[tuple[int, float]]) -> str:
    """(rows, len(keys) + 1): RIGHT where x > t and 0 where x <= t for each distinct split
    (feature, t), then an always-true column (RIGHT on every finite row) that carries constants.

    2^75 * X @ select^T - 2^75 * t: the product is exact (one 1 per row of `select`, the rest 0;
    inputs must be finite, as 0 * inf is NaN) and the subtraction rounds once, keeping the sign."""
    select = np.zeros((len(keys) + 1, n_features), dtype=np.float32)
    for i, (feature, _) in enumerate(keys):
        select[i, feature] = 1.0
    offset = np.append(-scaled_thresholds([t for _, t in keys]), SATURATE).astype(np.float32)
    diff = e.node("Gemm", [x, e.const("select", select), e.const("offset", offset)], "diff",
                  alpha=float(SATURATE), transB=1)
    return e.saturate(diff)


def _table(e: _Emitter, x: str, n_features: int, trees: list[Tree], out: str) -> None:
    """Each tree's split pattern as an integer, its leaf looked up in a table.

    Bit s of tree t's code is its split s (1 = right); one MatMul computes every code, plus
    t * 2^splits (carried by the always-true column) so that one flat table serves all trees:
    table[t * 2^splits + code] is the leaf that code reaches. Codes are sums of distinct powers
    of two below 2^24: exact in float32 in any order. Cast to int32, Clip to the table (a NaN
    input casts to an arbitrary integer: the Clip keeps the lookup in range), Gather, sum."""
    splits = max(1, max(t.n_splits for t in trees))
    keys = sorted(set().union(*(_split_keys(t) for t in trees)))
    column = {key: i for i, key in enumerate(keys)}
    weights = np.zeros((len(keys) + 1, len(trees)), dtype=np.float32)
    table = np.zeros((len(trees), 1 << splits), dtype=np.float32)
    codes = np.arange(1 << splits)
    for k, tree in enumerate(trees):
        for s, key in enumerate(_split_keys(tree)):
            weights[column[key], k] += 2.0**s
        weights[-1, k] = k << splits
        node = np.zeros(len(codes), dtype=np.int64)  # every code walks down at once; leaf i is ~i < 0
        for _ in range(tree.depth()):
            at = np.maximum(node, 0)
            node = np.where(node >= 0, np.where((codes >> at) & 1, tree.right[at], tree.left[at]), node)
        table[k] = tree.leaf_value[~node] if tree.n_splits else tree.leaf_value[0]
    right = _distinct_splits(e, x, n_features, keys)
    code = e.node("MatMul", [right, e.const("code_weights", weights * RIGHT_SCALE)], "code")
    index = e.node("Cast", [code], "code_int", to=TensorProto.INT32)
    index = e.node("Clip", [index, e.const("first_entry", np.array(0, dtype=np.int32)),
                            e.const("last_entry", np.array(table.size - 1, dtype=np.int32))], "entry")
    leaves = e.node("Gather", [e.const("leaf_table", table.reshape(-1)), index], "leaf", axis=0)
    e.node("ReduceSum", [leaves, e.const("tree_axis", np.array([1], dtype=np.int64))], "trees", output=out, keepdims=1)


def _gemm(e: _Emitter, x: str, n_features: int, trees: list[Tree], out: str) -> None:
    n_split = max(1, max(t.n_splits for t in trees))
    n_leaf = max(len(t.leaf_value) for t in trees)
    group = max(1, GROUP_SPLITS // n_split)  # trees per GEMM: block-diagonal path matrix
    n_groups = -(-len(trees) // group)
    width = group * n_split + 1  # splits per group, the last one always true (carries the bias)
    select = np.zeros((n_groups, width, n_features), dtype=np.float32)
    offset = np.zeros((n_groups, width), dtype=np.float32)  # -threshold * 2^75
    offset[:, :-1] = -PAD_THRESHOLD  # padding splits; their path coefficients are all 0
    offset[:, -1] = SATURATE  # 0 * x + 2^75: exactly RIGHT after the Clip
    paths = np.zeros((n_groups, group * n_leaf, width), dtype=np.float32)
    paths[:, :, -1] = -1.0  # padding leaves: never chosen
    values = np.zeros((n_groups, 1, group * n_leaf), dtype=np.float32)
    for k, tree in enumerate(trees):
        g, rows, cols = k // group, (k % group) * n_split, (k % group) * n_leaf
        select[g, rows + np.arange(tree.n_splits), tree.feature] = 1.0
        offset[g, rows : rows + tree.n_splits] = -scaled_thresholds(tree.threshold)
        values[g, 0, cols : cols + len(tree.leaf_value)] = tree.leaf_value
        if tree.n_splits == 0:
            paths[g, cols, -1] = 1.0
            continue

        def walk(node: int, path: list[tuple[int, float]]) -> None:
            if node < 0:
                leaf = cols + ~node
                for split, sign in path:
                    paths[g, leaf, rows + split] = sign
                paths[g, leaf, -1] = 1.0 - sum(sign > 0 for _, sign in path)
                return
            walk(tree.left[node], path + [(node, -1.0)])
            walk(tree.right[node], path + [(node, 1.0)])

        walk(0, [])
    # (rows, splits) = 2^75 * X @ select^T - 2^75 * threshold: one Gemm picks every split's input
    # and subtracts its threshold. The product is exact (one 1 per row of `select`, the rest 0;
    # inputs must be finite, as 0 * inf is NaN) and the subtraction rounds once, keeping the sign.
    # Then per group of trees (groups, rows, splits) @ (groups, splits, leaves): the path score.
    diff = e.node("Gemm", [x, e.const("select", select.reshape(-1, n_features)), e.const("offset", offset.reshape(-1))],
                  "diff", alpha=float(SATURATE), transB=1)
    right = e.saturate(diff)
    paths *= RIGHT_SCALE  # right is 0 or RIGHT: each path coefficient counts it as 0 or 1
    per_row = e.node("Reshape", [right, e.const("shape", np.array([-1, n_groups, width], dtype=np.int64))], "per_row")
    per_group = e.node("Transpose", [per_row], "per_group", perm=[1, 0, 2])
    paths_rm = np.ascontiguousarray(paths.transpose(0, 2, 1))
    chosen = e.node("Relu", [e.node("MatMul", [per_group, e.const("paths", paths_rm)], "leaf_score")], "chosen")
    group_values = e.node("MatMul", [chosen, e.const("leaf_value", np.ascontiguousarray(values.transpose(0, 2, 1)))],
                          "group_value")
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


def convert_libvmaf_trees(scope, operator, container, strategy: str = Strategy.AUTO) -> None:
    """skl2onnx converter body: (N, F) float32 -> (N, 1) float32 sum of the trees."""
    trees = trees_of(operator.raw_operator.booster_)
    chosen = Strategy(strategy)
    if chosen is Strategy.AUTO:
        chosen = choose_strategy(trees)
    emitter, x = _Emitter(scope, container), operator.inputs[0]
    if chosen is Strategy.TABLE:
        _table(emitter, x.full_name, x.type.shape[1], trees, operator.outputs[0].full_name)
    elif chosen is Strategy.GEMM:
        _gemm(emitter, x.full_name, x.type.shape[1], trees, operator.outputs[0].full_name)
    else:
        _traversal(emitter, emitter.scaled_input(x.full_name), trees, operator.outputs[0].full_name)
