"""Averaging over holders: how neighbours of different widths combine what they both hold.

With ordered width (docs/algorithm.md#width) a neighbour's block may be smaller or larger than
the receiver's. Each entry of the receiver's block is averaged over the messages whose block holds
it — the rule HeteroFL's server and Dis-PFL's mask-weighted average use — and is 0 where no
message does (for MCE-PL's ``m̄``: no neighbour vote, so no consensus step there). When every block
is the receiver's own, this is the plain mean, to the bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..nn.width import block_slices, overlap


def mean_over_holders(received: Sequence[Tensor], like: Tensor) -> Tensor:
    """Entrywise mean of ``received`` over the tensors holding each entry of ``like``'s shape (0 if none)."""
    total = torch.zeros_like(like, requires_grad=False)
    holders = torch.zeros_like(total)
    for tensor in received:
        shared = block_slices(overlap(tensor.shape, total.shape))
        total[shared].add_(tensor[shared])
        holders[shared].add_(1.0)
    return total.div_(holders.clamp_(min=1.0))
