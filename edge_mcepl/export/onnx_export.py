"""The pruned network as an ONNX graph of standard ops, built directly with ``onnx.helper``.

The pruned network is a short chain of six op kinds whose weights are plain arrays, so writing
the graph ourselves is simpler and more predictable than tracing a torch module through
``torch.onnx.export``: the file is byte-for-byte a function of (seed, mask), the LRN is exactly
the window-preserving form of :mod:`.prune` in the fastest standard ops measured (ONNX's own
``LRN`` op centres even-sized windows differently from PyTorch's, and onnxruntime implements only
odd sizes), nothing depends on the exporter of the installed torch version, and it takes
milliseconds. Opset 17 with IR version 8 keeps the files loadable by onnxruntime ≥ 1.13,
which is what older device images ship.

Input ``input``: float32 ``batch×C×H×W`` (dynamic batch); output ``logits``: ``batch×classes``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import __version__
from ..atomic import atomic_write
from . import graph as g
from .prune import PLRN, PConv, PLinear, PrunedNetwork

OPSET = 17
IR_VERSION = 8
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def scalar(self, stem: str, value: float) -> str:
        return self.const(stem, np.array(value, dtype=np.float32))

    def node(self, op_type: str, inputs: list[str], stem: str | None = None, **attrs) -> str:
        out = self.name(stem or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _lrn(b: _Builder, x: str, op: PLRN) -> str:
    """``x · (k + α/n · M·x²)^(−β)`` with the window matrix M as a 1×1 convolution (see :mod:`.prune`).

    α/n is folded into M, and for the usual β = 3/4 the power is two square roots and a division:
    seven nodes instead of nine, which matters at the narrow widths where onnxruntime's per-node
    overhead is a large share of an inference (docs/structured.md).
    """
    square = b.node("Mul", [x, x], "lrn_square")
    window = b.const("lrn_window", (op.window * np.float32(op.alpha / op.size))[:, :, None, None])
    total = b.node("Conv", [square, window], "lrn_window_sum", kernel_shape=[1, 1])
    denom = b.node("Add", [total, b.scalar("lrn_k", op.k)], "lrn_denominator")
    if op.beta == 0.75:  # x / (√d · ⁴√d): twice as fast as Pow in onnxruntime
        root = b.node("Sqrt", [denom], "lrn_sqrt")
        return b.node("Div", [x, b.node("Mul", [root, b.node("Sqrt", [root])], "lrn_power")], "lrn")
    factor = b.node("Pow", [denom, b.scalar("lrn_minus_beta", -op.beta)], "lrn_factor")
    return b.node("Mul", [x, factor], "lrn")


def to_onnx(net: PrunedNetwork, doc: str = "") -> onnx.ModelProto:
    """Build (and check) the ONNX model of ``net``."""
    b = _Builder()
    x = INPUT_NAME
    for op in net.ops:
        if isinstance(op, PConv):
            k = op.weight.shape[2]
            x = b.node("Conv", [x, b.const(f"{op.layer}_weight", op.weight)], op.layer, kernel_shape=[k, k],
                       strides=[op.stride, op.stride], pads=[op.padding] * 4)
        elif isinstance(op, PLinear):
            x = b.node("Gemm", [x, b.const(f"{op.layer}_weight", op.weight), b.const(f"{op.layer}_bias", op.bias)],
                       op.layer, transB=1)
        elif isinstance(op, PLRN):
            x = _lrn(b, x, op)
        elif isinstance(op, g.Elu):
            x = b.node("Elu", [x], alpha=op.alpha)
        elif isinstance(op, g.Relu):
            x = b.node("Relu", [x])
        elif isinstance(op, g.MaxPool):
            x = b.node("MaxPool", [x], kernel_shape=[op.kernel, op.kernel], strides=[op.stride, op.stride],
                       pads=[op.padding] * 4)
        elif isinstance(op, g.Flatten):
            x = b.node("Flatten", [x], axis=1)
        else:  # pragma: no cover
            raise TypeError(f"unknown op {op!r}")
    if net.elu_logits:
        x = b.node("Elu", [x], "elu_logits", alpha=1.0)
    b.nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name=OUTPUT_NAME))
    graph = helper.make_graph(
        b.nodes, "edge_mcepl_pruned",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *net.input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", net.num_classes])],
        b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge-mcepl",
                              producer_version=__version__, doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def save_model(model: onnx.ModelProto, path: Path) -> int:
    """Write ``model`` as one self-contained file (atomically); returns its size in bytes."""
    data = model.SerializeToString()
    atomic_write(path, data)
    return len(data)
