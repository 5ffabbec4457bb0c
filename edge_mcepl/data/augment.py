"""Training-batch augmentation: the standard CIFAR random crop (4-pixel zero padding) and horizontal flip.

About 500 images per agent are overfitted in the paper setting (docs/results.md: accuracy plateaus
from round ≈ 250 while the training loss keeps falling); showing each local step shifted and
mirrored copies is the cheapest remedy — index arithmetic on the batch, no extra multiply-adds, so
a Pi pays almost nothing for it. Every rule's local steps use it alike (``algorithm.augment``), so
baselines get the same trick as MCE-PL. The randomness is drawn from a generator seeded by (seed,
agent, round, step) and holds no state, so a resumed agent and a device lab augment exactly as the
simulator did.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nn.weights import derive_seed

PADDING = 4  # pixels of zero padding each side before the 32×32 crop (the usual CIFAR choice)

Augmentation = Callable[[Tensor, torch.Generator], Tensor]


def crop_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image of the N×C×H×W batch shifted by up to ``PADDING`` pixels (zeros — the normalised mean
    grey — fill in) and mirrored left–right with probability ½; a new tensor, ``images`` untouched."""
    n, c, h, w = images.shape
    padded = F.pad(images, (PADDING, PADDING, PADDING, PADDING))
    dy = torch.randint(0, 2 * PADDING + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * PADDING + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = dy[:, None] + torch.arange(h)[None, :]  # n×h source rows
    cols = dx[:, None] + torch.arange(w)[None, :]  # n×w source columns
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    device = images.device
    image, channel = torch.arange(n, device=device), torch.arange(c, device=device)
    return padded[image[:, None, None, None], channel[None, :, None, None], rows.to(device)[:, None, :, None],
                  cols.to(device)[:, None, None, :]]


AUGMENTATIONS: dict[str, Augmentation | None] = {"none": None, "crop-flip": crop_flip}


def augmentation_generator(seed: int, agent_id: int, round: int, step: int) -> torch.Generator:
    """The generator of one local step's augmentation: a function of who, when and which step only."""
    return torch.Generator().manual_seed(derive_seed(seed, f"augment:agent{agent_id}:round{round}:step{step}"))
