"""One masked layer's MCE-PL state — scores z, neighbour mean m̄, retention r — and the mask it selects.

The MCE-PL rule keeps one :class:`ScoreMask` per masked layer and binds it to the layer as the
layer's :class:`~edge_mcepl.nn.layers.WeightSource`: the forward pass then computes with
``v = w ⊙ m`` and the backward pass reaches the scores through the straight-through estimator
(docs/algorithm.md#mask-function, docs/algorithm.md#aggregation-tensor). Everything that decides the
mask lives here, next to the state it reads.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..nn.masking import StraightThroughMask, aggregation_magnitude, aggregation_tensor, drop_sparse_filters, topk_mask


class ScoreMask:
    """``m = TopK_r(|z| + mean|z|·m̄)``, with the filter-drop rule when ``min_kept_per_filter`` is set.

    Memory (docs/scale.md): m̄ is held as the neighbours' vote counts (small integers) and the
    number of holders, and the cached mask as bools — a quarter of float32 each; the float views
    are made when asked for, and equal the float computation bit for bit.
    """

    def __init__(self, scores: Tensor, neighbour_mean: Tensor, retention_ratio: float, *,
                 holders: Tensor | float | None = None, use_aggregation_tensor: bool = True,
                 min_kept_per_filter: int | None = None, aggregation_amplitude: float = 1.0) -> None:
        """With ``holders``, ``neighbour_mean`` is vote counts (:meth:`set_votes`); without, float m̄.

        ``aggregation_amplitude`` γ scales the neighbours' pull: ``|y| = |z| + γ·mean|z|·m̄`` (1: the paper's).
        """
        self.scores = scores.detach().clone().requires_grad_(True)  # a leaf the straight-through gradient reaches
        self._votes, self._holders = neighbour_mean, holders
        self.retention_ratio = retention_ratio
        self.use_aggregation_tensor = use_aggregation_tensor  # False: the "m̄ ≡ 0 in y" ablation
        self.min_kept_per_filter = min_kept_per_filter  # None: the filter-drop rule is off
        self.aggregation_amplitude = aggregation_amplitude
        self._cache: tuple[tuple, Tensor] | None = None

    @property
    def neighbour_mean(self) -> Tensor:
        """m̄ as float32: votes ÷ holders (a fresh tensor), or the float tensor it was set to."""
        if self._holders is None:
            return self._votes
        return self._votes.to(self.scores.dtype).div_(self._holders)

    @neighbour_mean.setter
    def neighbour_mean(self, value: Tensor) -> None:
        """Any float m̄ (a checkpoint's, a test's); :meth:`set_votes` keeps a vote count compactly."""
        self._votes, self._holders = value, None

    def set_votes(self, votes: Tensor, holders: Tensor | float) -> None:
        """m̄ = ``votes`` / ``holders``: integer vote counts and how many received masks hold each entry
        (one number when every mask holds all of them; at least 1 — an entry nobody holds has 0 votes)."""
        self._votes, self._holders = votes, holders

    def held_bytes(self) -> dict[str, int]:
        """Bytes this layer's m̄ (votes and holders) and cached mask hold (the scale benchmark's breakdown)."""
        held = [self._votes] + ([self._holders] if isinstance(self._holders, Tensor) else [])
        cached = [self._cache[1]] if self._cache is not None else []
        return {"m̄": sum(t.numel() * t.element_size() for t in held),
                "cached mask": sum(t.numel() * t.element_size() for t in cached)}

    def _effective_neighbour_mean(self) -> Tensor | None:
        """γ·m̄, what y adds (scaled by mean|z|); None in the "m̄ ≡ 0 in y" ablation."""
        if not self.use_aggregation_tensor:
            return None
        mean = self.neighbour_mean
        return mean if self.aggregation_amplitude == 1.0 else mean * self.aggregation_amplitude

    def aggregation_tensor(self) -> Tensor:
        """y = z + γ·mean|z|·sign(z)⊙m̄ (docs/algorithm.md#aggregation-tensor), or z alone in the ablation."""
        return aggregation_tensor(self.scores, self._effective_neighbour_mean())

    def select(self) -> Tensor:
        """The top-k selection before the filter-drop rule (a subclass may vote differently)."""
        return topk_mask(aggregation_magnitude(self.scores, self._effective_neighbour_mean()), self.retention_ratio)

    def _state(self) -> tuple:
        # In-place updates of z / m̄ bump a tensor's version counter, so this key changes exactly
        # when the mask can: evaluation batches and the next round's forward pass reuse the mask
        # instead of re-running the selection over every weight. Tensors are held (and compared by
        # identity), not their ids, which a freed tensor's successor could reuse.
        holders = self._holders
        return (self.scores, self.scores._version, self._votes, self._votes._version, holders,
                holders._version if isinstance(holders, Tensor) else None,
                self.retention_ratio, self.use_aggregation_tensor, self.min_kept_per_filter, self.aggregation_amplitude)

    @torch.no_grad()
    def mask(self) -> Tensor:
        """The layer's current binary mask (float 0/1, the scores' shape; cached as bools)."""
        state = self._state()
        if self._cache is not None and all(a is b or (not isinstance(a, Tensor) and a == b)
                                           for a, b in zip(self._cache[0], state)):
            return self._cache[1].to(self.scores.dtype)
        m = self.select()
        if self.min_kept_per_filter is not None:
            m = drop_sparse_filters(m, self.min_kept_per_filter)
        self._cache = (state, m.bool())
        return m

    def effective_weight(self, fixed: Tensor) -> Tensor:
        """v = w ⊙ m with the straight-through gradient to the scores."""
        return StraightThroughMask.apply(self.scores, fixed, self.mask())
