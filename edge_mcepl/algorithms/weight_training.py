"""Weight-training baseline on the same fixed init (docs/algorithm.md#baselines, the DSLTH check).

Each agent trains the *weights* of the same network from the same seeded init that MCE-PL keeps
fixed — dense, or magnitude-pruned once at init to exactly MCE-PL's per-layer density — with plain
SGD and no neighbours. Comparing it with mask-only learning (MCE-PL / local-only) on the same init
is the distributed strong-lottery-ticket check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from .base import RuleContext
from .params import Retention, params_from
from .weight_rule import DenseWeightRule, WeightParams


@dataclass(frozen=True)
class WeightTrainingParams(WeightParams):
    prune: bool = False  # True: magnitude-prune at init to the agent's MCE-PL density


class WeightTraining(DenseWeightRule):
    """Local weight training, dense (``prune=False``) or magnitude-pruned at MCE-PL's density."""

    exchanges_messages = False

    @classmethod
    def build(cls, ctx: RuleContext) -> WeightTraining:
        params = params_from(WeightTrainingParams, ctx.algorithm)
        return cls(ctx.model, params, ctx.retention if params.prune else Retention(1.0, 1.0),
                   total_rounds=ctx.total_rounds)

    def aggregate(self, received: Sequence[tuple[int, list[Tensor]]]) -> None:
        """No neighbours: nothing to mix."""
