"""Instance normalisation without parameters or running statistics (the ResNet-20's norm layers).

A zoo model holds no state but its fixed weights, which every agent shares and nobody trains
(docs/algorithm.md#objects), so BatchNorm — with its running mean and variance, and its affine
scale and shift — has no place in it. Each channel of each image is normalised over its own
H×W positions instead:

    out[n, c] = (x[n, c] − mean_hw x[n, c]) / √(var_hw x[n, c] + ε)      (biased variance, ε = 1e-5)

It is per image — an image's output does not depend on the rest of the batch, so batch-1 inference
is the same computation as training — and per channel: a channel that is identically zero (its
filter removed, or outside an ordered-width block) stays exactly 0 (0 / √ε) with no NaN and
changes no other channel, which is what filter removal and ordered width need
(docs/algorithm.md#resnet20-cifar).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-5


class InstanceNorm(nn.Module):
    """Parameter-free, statistics-free instance norm over H×W, per image and channel (``F.instance_norm``)."""

    def __init__(self, eps: float = EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.instance_norm(x, eps=self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
