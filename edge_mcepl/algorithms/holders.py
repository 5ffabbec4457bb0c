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


def votes_over_holders(received: Sequence[Tensor], like: Tensor) -> tuple[Tensor, Tensor | float]:
    """(votes, holders) of 0/1 masks over ``like``'s shape: per entry, how many of ``received`` keep it
    and how many hold it (at least 1) — one number when every block is ``like``'s own. Small integers:
    m̄ = votes / holders (:meth:`~.score_mask.ScoreMask.set_votes`) is :func:`mean_over_holders` to the bit."""
    count_type = torch.uint8 if len(received) <= torch.iinfo(torch.uint8).max else torch.int32
    votes = torch.zeros(like.shape, dtype=count_type, device=like.device)
    if all(tuple(t.shape) == tuple(like.shape) for t in received):
        for tensor in received:
            votes.add_(tensor.to(count_type))
        return votes, float(max(len(received), 1))
    holders = torch.zeros_like(votes)
    for tensor in received:
        shared = block_slices(overlap(tensor.shape, votes.shape))
        votes[shared].add_(tensor[shared].to(count_type))
        holders[shared].add_(1)
    return votes, holders.clamp_(min=1)


def mean_over_holders(received: Sequence[Tensor], like: Tensor, weights: Sequence[float] | None = None) -> Tensor:
    """Entrywise mean of ``received`` over the tensors holding each entry of ``like``'s shape (0 if none).

    With ``weights`` (one per received tensor, ≥ 0), the weighted mean over the holders: MCE-PL's
    ``neighbour_weighting: overlap`` (:mod:`.robust`); an entry whose holders all weigh 0 is 0.
    """
    total = torch.zeros_like(like, requires_grad=False)
    holders = torch.zeros_like(total)
    for j, tensor in enumerate(received):
        weight = 1.0 if weights is None else weights[j]
        shared = block_slices(overlap(tensor.shape, total.shape))
        total[shared].add_(tensor[shared], alpha=weight)
        holders[shared].add_(weight)
    return total.div_(holders.masked_fill_(holders == 0, 1.0))
