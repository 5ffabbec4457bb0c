"""Byzantine-robust aggregation for masks: leave out a neighbour whose mask is anti-correlated with one's own.

A signature proves who sent a mask and the density check (:mod:`.density`) that it keeps the declared
number of weights, but a compromised device can still send, validly signed and at the right density,
the weights it ranks *lowest* — pulling its neighbours' ``m̄`` toward weights they would drop. Such a
mask overlaps the receiver's own less than two independent random masks of the same densities would;
honest neighbours, which start from the same scores and are pulled together by the consensus step,
overlap far more. :func:`above_chance` is that test, over every layer the two masks share (ordered
width: the overlapping block); ``robust_aggregation: overlap`` averages only the neighbours that pass
(docs/security.md#byzantine-agents has the measured cost and protection).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..nn.width import block_slices, overlap


def above_chance(own: Sequence[Tensor], theirs: Sequence[Tensor]) -> bool:
    """Whether ``theirs`` shares more kept entries with ``own`` than independent masks of their densities would.

    Chance, per layer block of n entries with k₁ and k₂ kept, is k₁·k₂ / n shared entries; the test
    compares the sums over layers, so one small layer cannot decide it.
    """
    shared_kept = chance = 0.0
    for mine, other in zip(own, theirs):
        block = block_slices(overlap(tuple(mine.shape), tuple(other.shape)))
        a, b = mine[block].float(), other[block].float()
        shared_kept += float((a * b).sum())
        chance += float(a.sum()) * float(b.sum()) / max(a.numel(), 1)
    return shared_kept > chance
