"""The exported LRN in few onnxruntime nodes — α/n folded into the window matrix, d^(−3/4) as √d·⁴√d and a
division — still equals PyTorch's LRN, for the usual β = 3/4 and through ``Pow`` for any other β."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from edge_mcepl.export.onnx_export import IR_VERSION, OPSET, _Builder, _lrn
from edge_mcepl.export.prune import PLRN, lrn_window_matrix

CHANNELS = 6


def lrn_session(op: PLRN) -> tuple[ort.InferenceSession, list[str]]:
    b = _Builder()
    out = _lrn(b, "input", op)
    b.nodes.append(helper.make_node("Identity", [out], ["output"], name="output"))
    shape = ["batch", CHANNELS, 5, 5]
    graph = helper.make_graph(b.nodes, "lrn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)], b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session, [n.op_type for n in b.nodes[:-1]]


@pytest.mark.parametrize("beta, ops", [(0.75, ["Mul", "Conv", "Add", "Sqrt", "Sqrt", "Mul", "Div"]),
                                       (0.5, ["Mul", "Conv", "Add", "Pow", "Mul"])])
def test_the_exported_lrn_equals_torch_in_its_few_nodes(beta, ops):
    size, alpha, k = 4, 3.0, 1.5  # a large α, so the denominator is far from 1 and the power matters
    op = PLRN(size, alpha, beta, k, lrn_window_matrix(np.arange(CHANNELS), size))
    session, op_types = lrn_session(op)
    assert op_types == ops
    x = torch.randn(3, CHANNELS, 5, 5, generator=torch.Generator().manual_seed(0))
    want = F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k).numpy()
    got = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert float(np.abs(want - x.numpy()).max()) > 0.1, "the test's LRN must change its input measurably"
