"""Mini-batch sampling: reshuffled epochs from an agent's own seeded stream.

Each agent draws from its own generator so that batches — and therefore masks — are identical
whether the agent runs in the simulator or as its own process on a device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..nn.weights import derive_seed


class EpochSampler:
    """Yields index batches over ``n`` samples, one shuffled pass after another (last batch may be short)."""

    def __init__(self, n: int, batch_size: int, seed: int, agent_id: int) -> None:
        if n <= 0:
            raise ValueError(f"agent {agent_id} has no training samples")
        self.n, self.batch_size = n, batch_size
        self._gen = torch.Generator().manual_seed(derive_seed(seed, f"batches:agent{agent_id}"))
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def next_batch(self) -> Tensor:
        if self._pos >= len(self._order):
            self._order = torch.randperm(self.n, generator=self._gen)
            self._pos = 0
        batch = self._order[self._pos : self._pos + self.batch_size]
        self._pos += len(batch)
        return batch
