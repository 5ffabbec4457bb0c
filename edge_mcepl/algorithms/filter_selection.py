"""Learned filter selection: the structured alternative to ordered width, kept for comparison.

Instead of the *first* ⌈ρ·C⌉ filters (ordered width, docs/algorithm.md#width), each agent keeps
the ⌈ρ·C⌉ filters whose aggregation magnitude ``Σ|y|`` is largest — so neighbours' votes steer
which filters survive — then MCE-PL's TopK inside them, over the input channels the layer before
kept. The last layer keeps every output (the classes).

Everything else is MCE-PL's. What it cannot do, and why ordered width is the default
(docs/structured.md has the accuracy comparison): its filters are not nested, so an agent trains
the full-size masked network (no slicing), sends 1 bit per weight of the full shape, and a
receiver cannot tell a neighbour's kept filters from its shapes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..nn.masking import aggregation_magnitude, kept_count, top_entries
from ..nn.width import kept_filters
from .mcepl import MCEPL
from .score_mask import ScoreMask

DEAD = -1.0  # below every |y| ≥ 0: TopK never picks it while live entries remain


class FilterTopKMask(ScoreMask):
    """``m = TopK_r(|y|)`` restricted to the top ``filters`` rows by Σ|y| and the live inputs upstream."""

    filters: int | None = None  # None: keep every row (the last layer)
    upstream: FilterTopKMask | None = None  # the layer whose filters feed this one's inputs

    def link(self, filters: int | None, upstream: FilterTopKMask | None) -> None:
        self.filters, self.upstream = filters, upstream

    def _state(self) -> tuple:
        return super()._state() + (self.upstream._state() if self.upstream is not None else ())

    def live_inputs(self) -> Tensor | None:
        """Which of this layer's inputs the upstream layer still feeds (None: all of them)."""
        if self.upstream is None:
            return None
        alive = self.upstream.mask().reshape(self.upstream.mask().shape[0], -1).sum(dim=1) > 0
        return alive.repeat_interleave(self.scores.shape[1] // alive.numel())

    def select(self) -> Tensor:
        magnitude = aggregation_magnitude(self.scores, self._effective_neighbour_mean())
        live = self.live_inputs()
        if live is not None:
            magnitude[:, ~live] = DEAD
        rows = magnitude.reshape(magnitude.shape[0], -1)
        if self.filters is not None:
            ranking = torch.where(rows < 0, torch.zeros_like(rows), rows).sum(dim=1)
            # stable sort: equal sums keep the lower filter index, so every process picks the same rows
            dropped = torch.sort(ranking, descending=True, stable=True).indices[self.filters:]
            rows[dropped] = DEAD
        return top_entries(magnitude, kept_count(int((rows >= 0).sum()), self.retention_ratio))


class LearnedFilters(MCEPL):
    """MCE-PL whose ``retention.width`` keeps the best-voted filters instead of the first ones."""

    layer_mask = FilterTopKMask

    @property
    def exact_kept_count(self) -> bool:
        """TopK runs over the kept filters' live inputs only: at most the declared count."""
        return False

    def narrow_model(self) -> None:
        """No slicing: the kept filters are anywhere in the layer, so the full network is computed."""

    def link_layers(self) -> None:
        states = [state for state in self.layers if isinstance(state, FilterTopKMask)]
        for index, state in enumerate(states):
            last = index == len(states) - 1
            state.link(None if last else kept_filters(state.scores.shape[0], self.retention.width),
                       states[index - 1] if index else None)
