"""The pruned network as a plain torch module: the reference the pruning tests check.

It runs exactly the ops that :mod:`.onnx_export` writes, with stock torch operators, so a test can
compare it with the masked zoo model without going through onnxruntime, and the ONNX file can in
turn be compared with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import graph as g
from .prune import PConv, PLinear, PLRN, PrunedNetwork


def pruned_lrn(x: Tensor, op: PLRN) -> Tensor:
    """LRN whose windows are the original channels' windows (see :mod:`.prune`)."""
    window = torch.from_numpy(op.window)[:, :, None, None]
    return x * (F.conv2d(x * x, window) * (op.alpha / op.size) + op.k).pow(-op.beta)


class PrunedTorchNetwork(nn.Module):
    def __init__(self, net: PrunedNetwork) -> None:
        super().__init__()
        self.net = net
        self.weights: dict[int, Tensor] = {i: torch.from_numpy(op.weight) for i, op in enumerate(net.ops)
                                           if isinstance(op, (PConv, PLinear))}
        self.biases: dict[int, Tensor] = {i: torch.from_numpy(op.bias) for i, op in enumerate(net.ops)
                                          if isinstance(op, PLinear)}

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        for i, op in enumerate(self.net.ops):
            if isinstance(op, PConv):
                x = F.conv2d(x, self.weights[i], None, op.stride, op.padding)
            elif isinstance(op, PLinear):
                x = F.linear(x, self.weights[i], self.biases[i])
            elif isinstance(op, PLRN):
                x = pruned_lrn(x, op)
            elif isinstance(op, g.Elu):
                x = F.elu(x, op.alpha)
            elif isinstance(op, g.Relu):
                x = F.relu(x)
            elif isinstance(op, g.MaxPool):
                x = F.max_pool2d(x, op.kernel, op.stride, op.padding)
            elif isinstance(op, g.Flatten):
                x = torch.flatten(x, 1)
            else:  # pragma: no cover
                raise TypeError(f"unknown op {op!r}")
        return F.elu(x) if self.net.elu_logits else x
