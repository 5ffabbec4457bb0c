"""Byzantine-robust aggregation for masks: leave out a neighbour whose mask is anti-correlated with one's own.

A signature proves who sent a mask and the density check (:mod:`.density`) that it keeps the declared
number of weights, but a compromised device can still send, validly signed and at the right density,
the weights it ranks *lowest* — pulling its neighbours' ``m̄`` toward weights they would drop. Such a
mask overlaps the receiver's own less than two independent random masks of the same densities would;
honest neighbours, which start from the same scores and are pulled together by the consensus step,
overlap far more. :func:`above_chance` is that test, over every layer the two masks share (ordered
width: the overlapping block); ``robust_aggregation: overlap`` averages only the neighbours that pass
(docs/security.md#byzantine-agents has the measured cost and protection). The same overlap, graded
instead of pass/fail, is :func:`overlap_weight` — ``neighbour_weighting: overlap``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..nn.width import block_slices, overlap


def _overlap_counts(own: Sequence[Tensor], theirs: Sequence[Tensor]) -> tuple[float, float, float]:
    """(shared kept entries, their chance count, the most they could share), summed over the layer blocks
    both masks hold. Chance, per block of n entries with k₁ and k₂ kept, is k₁·k₂ / n; the most is min(k₁, k₂)."""
    shared_kept = chance = most = 0.0
    for mine, other in zip(own, theirs):
        block = block_slices(overlap(tuple(mine.shape), tuple(other.shape)))
        a, b = mine[block].float(), other[block].float()
        k1, k2 = float(a.sum()), float(b.sum())
        shared_kept += float((a * b).sum())
        chance += k1 * k2 / max(a.numel(), 1)
        most += min(k1, k2)
    return shared_kept, chance, most


def above_chance(own: Sequence[Tensor], theirs: Sequence[Tensor]) -> bool:
    """Whether ``theirs`` shares more kept entries with ``own`` than independent masks of their densities would.

    The test compares the sums over layers, so one small layer cannot decide it.
    """
    shared_kept, chance, _ = _overlap_counts(own, theirs)
    return shared_kept > chance


def overlap_weight(own: Sequence[Tensor], theirs: Sequence[Tensor]) -> float:
    """How much ``theirs`` agrees with ``own`` beyond chance, in [0, 1]: 0 at or below chance (independent or
    anti-correlated masks), 1 when it shares every entry it could.

    ``neighbour_weighting: overlap`` weighs each neighbour's vote in m̄ by it: with label skew, a
    neighbour whose mask is like this agent's has likely learned from similar classes, so its vote
    says more about what this agent should keep (the similarity weighting of personalized FL, read
    off the masks a receiver already has — nothing extra on the wire). Masks that cannot differ
    (the most equals chance: every entry kept) weigh 1.
    """
    shared_kept, chance, most = _overlap_counts(own, theirs)
    if most <= chance:
        return 1.0
    return min(max((shared_kept - chance) / (most - chance), 0.0), 1.0)
