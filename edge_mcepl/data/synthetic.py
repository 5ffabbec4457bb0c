"""A small, learnable, class-structured image dataset for tests and quick runs without real data.

Each class has one fixed smooth random prototype (a coarse random grid upsampled bilinearly, so it
has spatial structure a conv net can pick up). A sample is its class prototype, shifted by a few
pixels, scaled by a random contrast, plus Gaussian pixel noise. Classes are therefore well
separated, yet no two samples are identical and the shift defeats pixel-exact memorisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edge_mcepl.data.arrays import ArrayDataset
from edge_mcepl.errors import UserError

_COARSE = 4  # prototype grid before upsampling: low frequency, hence smooth
_MAX_SHIFT = 2  # pixels, in each direction
_CONTRAST = (0.8, 1.2)


def make_synthetic(
    num_classes: int = 10,
    shape: tuple[int, int, int] = (1, 28, 28),
    train_per_class: int = 200,
    test_per_class: int = 50,
    seed: int = 0,
    noise: float = 0.6,
) -> tuple[ArrayDataset, ArrayDataset]:
    """Train and test sets sharing the same class prototypes; identical for identical arguments.

    Samples are ordered class by class (like a sorted dataset); ``noise`` is the pixel noise std
    relative to the unit-std prototypes. Values end up roughly zero-mean, unit-std.
    """
    _validate(num_classes, shape, train_per_class, test_per_class, noise)
    generator = torch.Generator().manual_seed(seed)
    prototypes = _prototypes(num_classes, shape, generator)
    train = _samples(prototypes, train_per_class, noise, generator, "synthetic-train")
    test = _samples(prototypes, test_per_class, noise, generator, "synthetic-test")
    return train, test


def _validate(
    num_classes: int, shape: tuple[int, int, int], train: int, test: int, noise: float
) -> None:
    if num_classes < 2:
        raise UserError(f"synthetic dataset: num_classes must be ≥ 2, got {num_classes}")
    if len(shape) != 3 or min(shape) < 1 or min(shape[1:]) < _COARSE:
        raise UserError(f"synthetic dataset: shape must be (C, H, W) with H, W ≥ {_COARSE}, got {shape}")
    if train < 1 or test < 1:
        raise UserError(f"synthetic dataset: train/test per class must be ≥ 1, got {train}/{test}")
    if noise < 0:
        raise UserError(f"synthetic dataset: noise must be ≥ 0, got {noise}")


def _prototypes(
    num_classes: int, shape: tuple[int, int, int], generator: torch.Generator
) -> torch.Tensor:
    """``num_classes × C × H × W`` smooth patterns, each standardised to zero mean, unit std."""
    channels, height, width = shape
    coarse = torch.randn(num_classes, channels, _COARSE, _COARSE, generator=generator)
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
    flat = smooth.reshape(num_classes, -1)
    flat = (flat - flat.mean(dim=1, keepdim=True)) / flat.std(dim=1, keepdim=True)
    return flat.reshape(num_classes, *shape)


def _samples(
    prototypes: torch.Tensor, per_class: int, noise: float, generator: torch.Generator, name: str
) -> ArrayDataset:
    num_classes = prototypes.shape[0]
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    shifts = torch.randint(-_MAX_SHIFT, _MAX_SHIFT + 1, (len(labels), 2), generator=generator)
    images = _shifted(prototypes, labels, shifts)
    low, high = _CONTRAST
    contrast = low + (high - low) * torch.rand(len(labels), 1, 1, 1, generator=generator)
    images = images * contrast + noise * torch.randn(images.shape, generator=generator)
    images = images / (1.0 + noise**2) ** 0.5  # keep the overall std near 1 whatever the noise
    return ArrayDataset(images.contiguous(), labels, num_classes, name)


def _shifted(prototypes: torch.Tensor, labels: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Each sample's prototype circularly shifted by its (dy, dx), without a per-sample loop.

    Every (class, shift) combination is rolled once, then samples pick theirs by index.
    """
    span = 2 * _MAX_SHIFT + 1
    offsets = range(-_MAX_SHIFT, _MAX_SHIFT + 1)
    table = torch.stack(
        [torch.roll(prototypes, shifts=(dy, dx), dims=(2, 3)) for dy in offsets for dx in offsets],
        dim=1,
    )  # classes × span² × C × H × W
    shift_id = (shifts[:, 0] + _MAX_SHIFT) * span + (shifts[:, 1] + _MAX_SHIFT)
    return table[labels, shift_id]
