"""Validating any ONNX file against the fr_regressor_v2 contract and libvmaf's loader.

The inputs follow one of the contract's layouts (frgb.contract.LAYOUTS), read from the graph:
`features` (N, 6) and `codec` (N, codec width), or one input `features` (N, 6 + codec width).
frgb's interval graphs add two outputs after `score` (`lower`, `upper`); they pass the check
with that output list, each output held to the rules of `score` (float32, (N,)).

libvmaf's loader (libvmaf/src/dnn/model_loader.c, shared/FACTS.md) refuses a file over 50 MiB
(weights in external data are not counted) and matches node op types against its allowlist by
name only, in If/Loop bodies too, whatever their domain. `offending_ops` is that verdict.
frgb's stricter rule, every op and every opset import in the default domain, is reported on
its own (`foreign_domains`): a graph can pass the loader and still fail it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx.external_data_helper import uses_external_data

from frgb.contract import INTERVAL_OUTPUTS, LAYOUTS, N_FEATURES, OPSET, OUTPUT_SCORE, Layout, layout_for_width
from frgb.errors import FrgbError
from frgb.files import MAX_ONNX_BYTES, read_bytes, read_text
from frgb.targets import Inputs

BATCHES = (1, 7, 1000)

#: An op type name as ONNX spells them (an allowlist holds one per line; # starts a comment line).
_OP_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: libvmaf's loader refuses a model file larger than this (model_loader.h: 50 MB = 50 MiB).
LIBVMAF_MAX_BYTES = 50 * 1024 * 1024


@dataclass
class CheckReport:
    path: str
    contract_problems: list[str] = field(default_factory=list)
    offending_ops: dict[str, int] = field(default_factory=dict)  # "domain:op" -> count, refused by the loader
    loader_problems: list[str] = field(default_factory=list)  # other reasons the loader refuses the file
    foreign_domains: dict[str, int] = field(default_factory=dict)  # frgb's stricter rule: non-default domains
    layout: str | None = None  # the codec layout the inputs follow
    inputs: str | None = None  # "two" or "one"
    external_data_bytes: int = 0  # weights stored beside the file (not counted by the loader's size cap)

    @property
    def meets_contract(self) -> bool:
        return not self.contract_problems

    @property
    def libvmaf_loadable(self) -> bool:
        """What libvmaf's loader decides: op names on its allowlist, file within its size cap."""
        return not self.offending_ops and not self.loader_problems

    @property
    def default_domain_only(self) -> bool:
        return not self.foreign_domains

    @property
    def exit_code(self) -> int:
        """0: contract met and libvmaf-loadable (default domain only); 1: contract met, not loadable
        or outside the default domain; 2: contract broken."""
        if self.contract_problems:
            return 2
        return 0 if self.libvmaf_loadable and self.default_domain_only else 1


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


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    return [i for i in model.graph.input if i.name not in {init.name for init in model.graph.initializer}]


def input_layout(model: onnx.ModelProto) -> tuple[Layout, Inputs] | None:
    """The layout and input kind the graph's inputs follow, read from their names and widths."""
    inputs = _graph_inputs(model)
    widths = [(_dims(i) + [None, None])[1] for i in inputs]
    try:
        if len(inputs) == 2 and isinstance(widths[1], int):
            layout, kind = layout_for_width(widths[1]), Inputs.TWO
        elif len(inputs) == 1 and isinstance(widths[0], int):
            layout, kind = layout_for_width(widths[0] - N_FEATURES), Inputs.ONE
        else:
            return None
    except FrgbError:
        return None
    return (layout, kind) if [i.name for i in inputs] == [n for n, _ in layout.input_specs(kind)] else None


def _contract_inputs() -> str:
    return " or ".join(f"{[f'{n} (N, {w})' for n, w in layout.input_specs(kind)]}"
                       for layout in LAYOUTS.values() for kind in Inputs)


def _check_io(model: onnx.ModelProto, problems: list[str], found: tuple[Layout, Inputs] | None) -> None:
    inputs = _graph_inputs(model)
    names = [i.name for i in inputs]
    if found is None:
        problems.append(f"inputs are {[(n, _dims(i)) for n, i in zip(names, inputs)]}, the contract needs "
                        f"{_contract_inputs()}")
        specs = []
    else:
        specs = found[0].input_specs(found[1])
    for value, (name, width) in zip(inputs, specs):
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


def _check_runs(path: Path, problems: list[str], specs: list[tuple[str, int]]) -> None:
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: onnxruntime's warnings are not lines of frgb's output
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types
        problems.append(f"onnxruntime cannot load it: {str(e).splitlines()[0]}")
        return
    if not specs:
        return  # the inputs are not the contract's: nothing to feed
    rng = np.random.default_rng(0)
    for n in BATCHES:
        feeds = {name: rng.uniform(0.2, 1.0, (n, width)).astype(np.float32) for name, width in specs}
        try:
            outs = session.run(None, feeds)
        except Exception as e:
            problems.append(f"batch {n} does not run: {str(e).splitlines()[0]}")
            continue
        for value, out in zip(session.get_outputs(), outs):
            if out.shape != (n,):
                problems.append(f"batch {n} gives {value.name} shape {out.shape}, not ({n},)")


def _external_data(model: onnx.ModelProto, folder: Path, problems: list[str]) -> int:
    """Bytes of the external data files the model's initializers name (problems: missing files)."""
    locations = set()
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            info = {entry.key: entry.value for entry in tensor.external_data}
            locations.add(info.get("location", ""))
    total = 0
    for location in sorted(locations):
        file = folder / location
        if not file.is_file():
            problems.append(f"external data file {location} is missing (next to the model)")
        else:
            total += file.stat().st_size
    return total


def _loader_verdict(model: onnx.ModelProto, size: int, allowed: set[str], report: CheckReport) -> None:
    """libvmaf's loader: size cap and op names (any domain); then frgb's default-domain rule."""
    if size > LIBVMAF_MAX_BYTES:
        report.loader_problems.append(f"the file is {size / 2**20:.1f} MiB; libvmaf's loader refuses files over "
                                      f"{LIBVMAF_MAX_BYTES / 2**20:.0f} MiB (weights in external data do not count)")
    nodes = list(_nodes(model.graph))
    report.offending_ops = dict(sorted(Counter(
        f"{node.domain or 'ai.onnx'}:{node.op_type}" for node in nodes if node.op_type not in allowed).items()))
    foreign = Counter(f"{node.domain}:{node.op_type}" for node in nodes if node.domain not in ("", "ai.onnx"))
    for opset in model.opset_import:  # a declared foreign domain, even unused, is not default-only
        if opset.domain not in ("", "ai.onnx"):
            foreign[f"{opset.domain} (opset import)"] += 1
    report.foreign_domains = dict(sorted(foreign.items()))


def _onnx_model(path: Path, data: bytes) -> onnx.ModelProto:
    """The parsed model, or an error: what is not an ONNX model is neither checked nor loadable."""
    try:
        model = onnx.load_from_string(data)
    except Exception:  # protobuf's DecodeError and others
        raise FrgbError(f"{path}: not a valid ONNX model (its bytes do not parse as an ONNX protobuf)") from None
    external = {info.value for tensor in model.graph.initializer if uses_external_data(tensor)
                for info in tensor.external_data if info.key == "location"}
    try:  # with weights in external data, the checker reads them beside the file (missing ones: `_external_data`)
        if not external:
            onnx.checker.check_model(model)
        elif all((path.parent / location).is_file() for location in external):
            onnx.checker.check_model(str(path))
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
    model = _onnx_model(path, data)
    report = CheckReport(str(path))
    found = input_layout(model)
    if found is not None:
        report.layout, report.inputs = found[0].name, found[1].value
    report.external_data_bytes = _external_data(model, path.parent, report.contract_problems)
    _check_io(model, report.contract_problems, found)
    _check_runs(path, report.contract_problems, [] if found is None else found[0].input_specs(found[1]))
    _loader_verdict(model, len(data), allowed, report)
    return report
