"""`frgb check` agrees with libvmaf's loader: its 50 MiB cap (external data not counted), op names
matched by name in any domain, and frgb's stricter default-domain rule reported on its own."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from frgb.check import LIBVMAF_MAX_BYTES, check_model
from tests.helpers import invoke


def contract_graph(extra_initializer: np.ndarray | None = None, gelu_domain: str | None = None,
                   codec_width: int = 8, one_input: bool = False) -> onnx.ModelProto:
    """A small graph with the contract's inputs and output: score = sum of the inputs (Gelu of it
    in `gelu_domain`, if given)."""
    nodes, inits = [], []
    if one_input:
        inputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 6 + codec_width])]
        nodes.append(helper.make_node("Identity", ["features"], ["x"]))
    else:
        inputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 6]),
                  helper.make_tensor_value_info("codec", TensorProto.FLOAT, ["N", codec_width])]
        nodes.append(helper.make_node("Concat", ["features", "codec"], ["x"], axis=1))
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"))
    nodes.append(helper.make_node("ReduceSum", ["x", "axis"], ["total"], keepdims=0))
    last = "total"
    opsets = [helper.make_opsetid("", 17)]
    if gelu_domain:
        nodes.append(helper.make_node("Gelu", [last], ["gelu"], domain=gelu_domain))
        opsets.append(helper.make_opsetid(gelu_domain, 1))
        last = "gelu"
    if extra_initializer is not None:
        inits.append(numpy_helper.from_array(extra_initializer, "weights"))
        nodes.append(helper.make_node("ReduceSum", ["weights"], ["w"], keepdims=1))
        nodes.append(helper.make_node("Mul", [last, "w"], ["scaled"]))
        last = "scaled"
    nodes.append(helper.make_node("Identity", [last], ["score"]))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
                              inits)
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def big_weights() -> np.ndarray:
    return np.zeros(LIBVMAF_MAX_BYTES // 4 + 1024, dtype=np.float32)


@pytest.mark.parametrize("width, one_input, layout", [(8, False, "card"), (14, False, "fork-v2"),
                                                      (14, True, "fork-v2"), (8, True, "card")])
def test_layout_and_input_kind_are_read_from_the_graph(tmp_path, width, one_input, layout):
    path = tmp_path / "m.onnx"
    onnx.save(contract_graph(codec_width=width, one_input=one_input), path)
    report = check_model(path)
    assert report.meets_contract, report.contract_problems
    assert (report.layout, report.inputs) == (layout, "one" if one_input else "two")
    assert report.exit_code == 0


def test_an_unknown_codec_width_breaks_the_contract(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(contract_graph(codec_width=10), path)
    report = check_model(path)
    assert report.exit_code == 2 and "the contract needs" in report.contract_problems[0]


def test_a_file_over_50_mib_is_not_loadable_but_meets_the_contract(tmp_path):
    path = tmp_path / "big.onnx"
    onnx.save(contract_graph(big_weights()), path)
    assert path.stat().st_size > LIBVMAF_MAX_BYTES
    report = check_model(path)
    assert report.meets_contract, report.contract_problems
    assert not report.libvmaf_loadable and "50 MiB" in report.loader_problems[0]
    result = invoke("check", path)
    assert result.exit_code == 1 and "50 MiB" in result.output


def test_weights_in_external_data_do_not_count_and_are_loaded(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save(contract_graph(big_weights()), path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="external.weights", size_threshold=1024)
    assert path.stat().st_size < 1 << 20
    report = check_model(path)
    assert report.meets_contract, report.contract_problems  # it ran: the weights were found
    assert report.libvmaf_loadable and report.exit_code == 0
    assert report.external_data_bytes > LIBVMAF_MAX_BYTES
    (tmp_path / "external.weights").unlink()
    report = check_model(path)
    assert not report.meets_contract and any("external" in p for p in report.contract_problems)


def test_op_names_match_as_the_loader_does_and_foreign_domains_are_a_finding_of_their_own(tmp_path):
    """com.microsoft's Gelu: its name is on the allowlist, so libvmaf's loader takes it; frgb's
    default-domain rule does not (exit 1, as before)."""
    path = tmp_path / "contrib.onnx"
    onnx.save(contract_graph(gelu_domain="com.microsoft"), path)
    report = check_model(path)
    assert report.meets_contract, report.contract_problems
    assert report.libvmaf_loadable and report.offending_ops == {}
    assert report.foreign_domains == {"com.microsoft:Gelu": 1, "com.microsoft (opset import)": 1}
    assert report.exit_code == 1
    result = invoke("check", path)
    assert result.exit_code == 1 and "com.microsoft:Gelu" in result.output and "libvmaf       loadable" in result.output
