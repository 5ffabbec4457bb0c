"""Local-only masks (docs/algorithm.md#baselines): MCE-PL with no neighbours — m̄ ≡ 0 and η₂ = 0.

It is the MCE-PL rule itself with the neighbour terms switched off: no round-0 prior (zeros), no
consensus step, and the agent is built with an empty neighbour set (``exchanges_messages``), so it
sends and hears nothing and ``aggregate`` keeps m̄ at zero. Its final masks export like MCE-PL's.
"""

from __future__ import annotations

import dataclasses

from .base import RuleContext
from .mcepl import MCEPL, MCEPLParams


class LocalOnly(MCEPL):
    exchanges_messages = False

    @classmethod
    def params_for(cls, ctx: RuleContext) -> MCEPLParams:
        """The MCE-PL knobs with every neighbour term removed."""
        return dataclasses.replace(super().params_for(ctx), consensus_lr=0.0, round0_prior="zeros")
