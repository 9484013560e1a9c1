"""Validating any ONNX file against the fr_regressor_v2 contract and libvmaf's op allowlist.

frgb's interval graphs keep the contract's inputs and add two outputs after `score`
(`lower`, `upper`); they pass the check with that output list, each output held to the rules of
`score` (float32, (N,))."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from frgb.contract import INPUT_CODEC, INPUT_FEATURES, INTERVAL_OUTPUTS, OPSET, OUTPUT_SCORE
from frgb.errors import FrgbError
from frgb.files import MAX_ONNX_BYTES, read_bytes, read_text

BATCHES = (1, 7, 1000)
_INPUTS = ((INPUT_FEATURES, 6), (INPUT_CODEC, 8))


@dataclass
class CheckReport:
    path: str
    contract_problems: list[str] = field(default_factory=list)
    offending_ops: dict[str, int] = field(default_factory=dict)  # "domain:op" -> count

    @property
    def meets_contract(self) -> bool:
        return not self.contract_problems

    @property
    def libvmaf_loadable(self) -> bool:
        return not self.offending_ops

    @property
    def exit_code(self) -> int:
        """0: contract met and libvmaf-loadable; 1: contract met, not loadable; 2: contract broken."""
        return 2 if self.contract_problems else (1 if self.offending_ops else 0)


#: An op type name as ONNX spells them (an allowlist holds one per line; # starts a comment line).
_OP_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_allowlist(path: Path | None = None) -> set[str]:
    """The op types of an allowlist file (the shipped one by default), or an error naming the file
    and the line that is not one."""
    if path is None:
        text = resources.files("frgb").joinpath("libvmaf_op_allowlist.txt").read_text()
    else:
        text = read_text(path, "a libvmaf op allowlist")
    ops = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if not _OP_TYPE.fullmatch(line.strip()):
            raise FrgbError(f"{path}:{number}: {line.strip()[:40]!r} is not an op type name; an allowlist holds "
                            "one per line")
        ops.add(line.strip())
    if not ops:
        raise FrgbError(f"{path}: the allowlist names no op type")
    return ops


def _nodes(graph: onnx.GraphProto):
    """Every node, recursing into subgraphs (If/Loop bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _nodes(g)


def _dims(value: onnx.ValueInfoProto) -> list:
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]


def _check_io(model: onnx.ModelProto, problems: list[str]) -> None:
    inputs = [i for i in model.graph.input if i.name not in {init.name for init in model.graph.initializer}]
    names = [i.name for i in inputs]
    if names != [INPUT_FEATURES, INPUT_CODEC]:
        problems.append(f"inputs are {names}, the contract needs ['{INPUT_FEATURES}', '{INPUT_CODEC}']")
    for value, (name, width) in zip(inputs, _INPUTS):
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"input {value.name} is not float32")
        dims = _dims(value)
        if len(dims) != 2 or dims[1] != width:
            problems.append(f"input {value.name} has shape {dims}, the contract needs (N, {width})")
        elif isinstance(dims[0], int) and dims[0] > 0:
            problems.append(f"input {value.name} has a fixed batch of {dims[0]}; the batch must be dynamic")
    outputs = list(model.graph.output)
    names = tuple(o.name for o in outputs)
    if names not in ((OUTPUT_SCORE,), INTERVAL_OUTPUTS):
        problems.append(f"outputs are {list(names)}, the contract needs ['{OUTPUT_SCORE}'] "
                        f"(or {list(INTERVAL_OUTPUTS)} for an interval graph)")
    for value in outputs[:len(INTERVAL_OUTPUTS)]:
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"output {value.name} is not float32")
        dims = _dims(value)
        if len(dims) != 1:
            problems.append(f"output {value.name} has rank {len(dims)} ({dims}); the contract needs (N,)")
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if default != [OPSET]:
        problems.append(f"default-domain opset is {default}, the contract needs {OPSET}")


def _check_runs(data: bytes, problems: list[str]) -> None:
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types
        problems.append(f"onnxruntime cannot load it: {str(e).splitlines()[0]}")
        return
    rng = np.random.default_rng(0)
    for n in BATCHES:
        feeds = {name: rng.uniform(0.2, 1.0, (n, width)).astype(np.float32) for name, width in _INPUTS}
        try:
            outs = session.run(None, feeds)
        except Exception as e:
            problems.append(f"batch {n} does not run: {str(e).splitlines()[0]}")
            continue
        for value, out in zip(session.get_outputs(), outs):
            if out.shape != (n,):
                problems.append(f"batch {n} gives {value.name} shape {out.shape}, not ({n},)")


def _onnx_model(path: Path, data: bytes) -> onnx.ModelProto:
    """The parsed model, or an error: what is not an ONNX model is neither checked nor loadable."""
    try:
        model = onnx.load_from_string(data)
    except Exception:  # protobuf's DecodeError and others
        raise FrgbError(f"{path}: not a valid ONNX model (its bytes do not parse as an ONNX protobuf)") from None
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx's ValidationError and others
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FrgbError(f"{path}: not a valid ONNX model ({reason[:200]})") from None
    if not model.graph.node:
        raise FrgbError(f"{path}: not a valid ONNX model (its graph has no nodes)")
    return model


def check_model(path: str | Path, allowlist: Path | None = None) -> CheckReport:
    path = Path(path)
    data = read_bytes(path, "an ONNX model", MAX_ONNX_BYTES)
    allowed = read_allowlist(allowlist)
    report = CheckReport(str(path))
    model = _onnx_model(path, data)
    _check_io(model, report.contract_problems)
    _check_runs(data, report.contract_problems)
    bad = Counter(
        f"{node.domain or 'ai.onnx'}:{node.op_type}"
        for node in _nodes(model.graph)
        if node.domain not in ("", "ai.onnx") or node.op_type not in allowed
    )
    for opset in model.opset_import:  # a declared foreign domain, even unused, is not default-only
        if opset.domain not in ("", "ai.onnx"):
            bad[f"{opset.domain} (opset import)"] += 1
    report.offending_ops = dict(sorted(bad.items()))
    return report
