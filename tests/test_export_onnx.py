"""The exported ONNX file, run by onnxruntime, computes each zoo model's masked network."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge_mcepl.export.graph import trace_ops
from edge_mcepl.export.onnx_export import save_model, to_onnx
from edge_mcepl.export.prune import prune_network
from edge_mcepl.export.run import masked_model
from edge_mcepl.nn.weights import generate_fixed_weights
from edge_mcepl.nn.zoo import ZOO, build_model

torch.set_num_threads(1)


@pytest.mark.parametrize("model_name", sorted(name for name, entry in ZOO.items() if entry.exportable))
def test_onnx_file_matches_masked_torch_model(model_name, tmp_path):
    template = build_model(model_name)
    fixed = generate_fixed_weights(template, model_name, 9)
    rng = np.random.default_rng(1)
    masks = {}
    for name, layer in template.masked_layers():
        m = (rng.random(tuple(layer.weight.shape)) < 0.3).astype(np.float32)
        if name != "fc2":
            m[rng.random(m.shape[0]) < 0.3] = 0  # dead filters / rows in every hidden layer
        masks[name] = m
    weights = {k: v.numpy() for k, v in fixed.tensors.items()}
    kwargs = dict(input_shape=template.input_shape, num_classes=10, elu_logits=True)
    pruned = prune_network(trace_ops(template), weights, masks, **kwargs)
    dense = prune_network(trace_ops(template), weights, masks, remove=False, **kwargs)
    size = save_model(to_onnx(pruned), tmp_path / "model.onnx")
    dense_size = save_model(to_onnx(dense), tmp_path / "dense.onnx")
    assert pruned.filters_removed > 0 and size < dense_size and pruned.params < dense.params

    x = np.random.default_rng(2).standard_normal((256, *template.input_shape)).astype(np.float32)
    reference = masked_model(model_name, 10, fixed, [masks[n] for n, _ in template.masked_layers()], True)
    with torch.no_grad():
        want = torch.cat([reference.logits(c) for c in torch.from_numpy(x).split(64)]).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    for path in (tmp_path / "model.onnx", tmp_path / "dense.onnx"):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        got = np.concatenate([session.run(None, {"input": x[i:i + 64]})[0] for i in range(0, 256, 64)])
        assert np.abs(got - want).max() <= 1e-5, path.name
        assert session.run(None, {"input": x[:1]})[0].shape == (1, 10)  # dynamic batch dimension

    model = onnx.load(str(tmp_path / "model.onnx"))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {n.op_type for n in model.graph.node} <= {"Conv", "Gemm", "Elu", "MaxPool", "Flatten", "Mul", "Add",
                                                     "Sqrt", "Div", "Pow", "Identity"}
