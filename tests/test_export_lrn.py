"""Pruning across an LRN keeps each channel's original window: renumbered windows would be wrong."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from edge_mcepl.export.graph import trace_ops
from edge_mcepl.export.onnx_export import to_onnx
from edge_mcepl.export.prune import PLRN, lrn_window_matrix, prune_network
from edge_mcepl.export.torch_model import PrunedTorchNetwork
from edge_mcepl.nn.layers import FixedMask, MaskedConv2d, MaskedLinear
from edge_mcepl.nn.lrn import LocalResponseNorm
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.zoo import MaskedNetwork

torch.set_num_threads(1)


class StrongLRNNet(MaskedNetwork):
    """conv → ELU → LRN with a large α (so windows matter a lot) → pool → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape, self.num_classes = (2, 6, 6), 3
        self.conv = MaskedConv2d(2, 8, 3, padding=1)
        self.lrn = LocalResponseNorm(4, alpha=4.0, beta=0.75, k=1.0)
        self.fc = MaskedLinear(8 * 3 * 3, 3)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(self.lrn(F.elu(self.conv(x))), 2), 1))


def test_window_matrix_follows_original_indices():
    # Survivors 0, 1, 3, 4 of 5 channels; PyTorch's size-4 window of c is [c−2, c+1].
    window = lrn_window_matrix(np.array([0, 1, 3, 4]), 4)
    assert window.tolist() == [[1, 1, 0, 0],   # 0: {−2..1} → 0, 1
                               [1, 1, 0, 0],   # 1: {−1..2} → 0, 1 (2 was removed)
                               [0, 1, 1, 1],   # 3: {1..4} → 1, 3, 4
                               [0, 0, 1, 1]]   # 4: {2..5} → 3, 4


def test_pruned_lrn_equals_masked_network_and_renumbered_windows_do_not():
    model = StrongLRNNet()
    fixed = generate_fixed_weights(model, "strong-lrn", 1)
    load_fixed_weights(model, fixed)
    masks = {"conv": np.ones((8, 2, 3, 3), np.float32), "fc": np.ones((3, 72), np.float32)}
    masks["conv"][[2, 5]] = 0  # interior gaps: neighbours on both sides survive
    for name, layer in model.masked_layers():
        layer.use(FixedMask(torch.from_numpy(masks[name])))
    x = torch.randn(32, 2, 6, 6, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        want = model.logits(x)

    weights = {k: v.numpy() for k, v in fixed.tensors.items()}
    net = prune_network(trace_ops(model), weights, masks, input_shape=(2, 6, 6), num_classes=3, elu_logits=False)
    assert net.layers[0].filters_kept == 6
    got = PrunedTorchNetwork(net)(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

    session = ort.InferenceSession(to_onnx(net).SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(onnx_out, want.numpy(), rtol=0, atol=1e-5)

    # The stock LRN of the pruned tensor (windows over the new, renumbered channels) is measurably wrong.
    naive_ops = [dataclasses.replace(op, window=lrn_window_matrix(np.arange(op.window.shape[0]), op.size))
                 if isinstance(op, PLRN) else op for op in net.ops]
    naive = PrunedTorchNetwork(dataclasses.replace(net, ops=naive_ops))(x)
    assert float((naive - want).abs().max()) > 1e-3
