"""Byzantine agents for robustness experiments: honest training, a hostile message.

:class:`InvertedMasks` is the strongest mask attack the density check cannot see: the agent trains
its scores like any MCE-PL agent (so its hostile masks track the lab's), but sends, in every layer,
as many weights as its real mask keeps — the ones it ranks *lowest*. Signed with its own key and at
its declared density, the message passes every check a receiver can make alone; only robust
aggregation (:mod:`.robust`) can leave it out. (A bit-for-bit inversion ``~m`` keeps 1 − r of the
weights and is refused by the density check; docs/security.md#byzantine-agents.)
"""

from __future__ import annotations

from torch import Tensor

from ..nn.masking import aggregation_magnitude, top_entries
from .mcepl import MCEPL


class InvertedMasks(MCEPL):
    """An MCE-PL agent whose messages carry its lowest-ranked weights (its own forward pass is honest)."""

    def masks(self) -> list[Tensor]:
        out = []
        for state in self.layers:
            kept = int(state.mask().sum())
            magnitude = aggregation_magnitude(state.scores, state.neighbour_mean)
            out.append(top_entries(-magnitude, kept))
        return out


ATTACKS: dict[str, type[MCEPL]] = {"inverted_masks": InvertedMasks}
