"""Local-only masks (spec §10): MCE-PL with no neighbours — m̄ ≡ 0 and η₂ = 0.

It is the MCE-PL rule itself with the neighbour terms switched off: no round-0 prior (zeros), no
consensus step, and the agent is built with an empty neighbour set, so it sends and hears nothing
and ``aggregate`` keeps m̄ at zero.
"""

from __future__ import annotations

import dataclasses

from .mcepl import MCEPLParams


def local_only_params(params: MCEPLParams) -> MCEPLParams:
    """The MCE-PL knobs with every neighbour term removed."""
    return dataclasses.replace(params, consensus_lr=0.0, round0_prior="zeros")
