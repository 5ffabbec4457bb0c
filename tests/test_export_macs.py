"""The manifest's MACs and parameters are those of the exported graph, LRN window sums included.

The independent count reads only the ONNX file: onnx shape inference gives every Conv's output
size, the initializers give the kernels, so nothing here reuses the exporter's own bookkeeping.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from edge_mcepl.export.graph import trace_ops
from edge_mcepl.export.manifest import size_summary
from edge_mcepl.export.onnx_export import to_onnx
from edge_mcepl.export.prune import prune_network
from edge_mcepl.nn.weights import generate_fixed_weights
from edge_mcepl.nn.zoo import build_model


def graph_costs(model: onnx.ModelProto) -> tuple[int, int]:
    """(multiply-accumulates per image, numbers in the weights and biases) of the Conv and Gemm nodes."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    outputs = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    kernels = {t.name: list(t.dims) for t in model.graph.initializer}
    assert not {n.op_type for n in model.graph.node} & {"MatMul", "ConvTranspose", "Einsum"}
    macs, weights = 0, {name for n in model.graph.node if n.op_type in ("Conv", "Gemm") for name in n.input[1:]}
    for node in model.graph.node:
        if node.op_type == "Conv":  # output N×O×H×W, kernel O×(I/groups)×kh×kw
            _, channels, height, width = outputs[node.output[0]]
            macs += channels * height * width * math.prod(kernels[node.input[1]][1:])
        elif node.op_type == "Gemm":
            assert {a.name: a.i for a in node.attribute} == {"transB": 1}
            macs += math.prod(kernels[node.input[1]])  # out × in per image
    return macs, sum(math.prod(kernels[name]) for name in weights)


def exported(model_name: str, dead: bool):
    template = build_model(model_name)
    weights = {k: v.numpy() for k, v in generate_fixed_weights(template, model_name, 5).tensors.items()}
    rng = np.random.default_rng(3)
    masks = {}
    for name, layer in template.masked_layers():
        masks[name] = (rng.random(tuple(layer.weight.shape)) < 0.5).astype(np.float32)
        if dead and name != "fc2":
            masks[name][rng.random(masks[name].shape[0]) < 0.4] = 0
    kwargs = {"input_shape": template.input_shape, "num_classes": 10, "elu_logits": False}
    return (prune_network(trace_ops(template), weights, masks, **kwargs),
            prune_network(trace_ops(template), weights, masks, remove=False, **kwargs))


def test_dense_alexnet_counts_the_lrn_windows_by_hand():
    _, dense = exported("alexnet-cifar", dead=False)
    lrn = 64 * 64 * 30 * 30 + 128 * 128 * 12 * 12 + 256 * 256 * 3 * 3  # C×C 1×1 conv over each LRN's H×W
    assert lrn == 6_635_520
    assert dense.dense_macs == 41_184_000 + 198_528 + lrn == 48_018_048  # docs/algorithm.md §7 + LRN windows
    assert dense.dense_params == 1_227_328 + 202 + 64 ** 2 + 128 ** 2 + 256 ** 2


@pytest.mark.parametrize("model_name", ["alexnet-cifar", "small-cnn"])
def test_manifest_macs_and_params_equal_the_onnx_graph(model_name):
    pruned, dense = exported(model_name, dead=True)
    assert pruned.filters_removed > 0
    summary = size_summary(pruned)
    assert (summary["macs"]["dense"], summary["params"]["dense"]) == graph_costs(to_onnx(dense))
    assert (summary["macs"]["pruned"], summary["params"]["pruned"]) == graph_costs(to_onnx(pruned))
    kinds = summary["macs"]["by_kind"]
    assert sum(k["dense"] for k in kinds.values()) == summary["macs"]["dense"]
    assert sum(k["pruned"] for k in kinds.values()) == summary["macs"]["pruned"]
    assert (kinds["lrn_window"]["dense"] > 0) == (model_name == "alexnet-cifar")
    assert "LRN" in summary["macs"]["counted"] and "LRN" in summary["params"]["counted"]
