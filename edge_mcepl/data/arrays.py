"""An in-memory image classification dataset as two tensors.

Every dataset the project uses (CIFAR-10, MNIST, synthetic) fits in memory, so agents index one
shared tensor pair instead of going through a per-sample ``Dataset``/``DataLoader`` pipeline; this
keeps mini-batch sampling a single fancy-index and makes partitions plain index arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Normalised images (float32, N×C×H×W) with integer labels (int64, N) in ``0..num_classes-1``."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        # Shape errors here are programming errors in a loader, not user mistakes, so they are
        # plain ValueErrors: a loader must never hand the trainer a malformed dataset.
        if self.images.dtype != torch.float32 or self.images.dim() != 4:
            raise ValueError(
                f"{self.name}: images must be float32 N×C×H×W, got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(
                f"{self.name}: labels must be int64 of shape (N,), got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"{self.name}: {self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )
        if self.num_classes < 1:
            raise ValueError(f"{self.name}: num_classes must be ≥ 1, got {self.num_classes}")
        if self.labels.numel() and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes
        ):
            raise ValueError(f"{self.name}: labels must lie in 0..{self.num_classes - 1}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ArrayDataset:
        """A copy holding only ``indices`` (in that order), e.g. one agent's share."""
        index = torch.as_tensor(np.array(indices, dtype=np.int64))
        return ArrayDataset(
            images=self.images[index],
            labels=self.labels[index],
            num_classes=self.num_classes,
            name=self.name,
        )

    def to(self, device: torch.device) -> ArrayDataset:
        """The same dataset on ``device`` (itself when already there: a shared test set is moved once)."""
        if self.images.device == device:
            return self
        return ArrayDataset(self.images.to(device), self.labels.to(device), self.num_classes, self.name)
