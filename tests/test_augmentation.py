"""Crop-and-flip augmentation of local-step batches: what it computes, seeded without state, used by every rule."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from edge_mcepl.data.augment import PADDING, augmentation_generator, crop_flip
from edge_mcepl.errors import UserError
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def reference_crop_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The same draws, image by image: pad, cut the window, mirror it."""
    n, _, h, w = images.shape
    dy = torch.randint(0, 2 * PADDING + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * PADDING + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = []
    for i in range(n):
        window = F.pad(images[i], (PADDING,) * 4)[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out.append(window.flip(-1) if flip[i] else window)
    return torch.stack(out)


def test_each_image_is_a_shifted_possibly_mirrored_window_of_the_padded_image():
    images = torch.randn(64, 3, 32, 32)
    got = crop_flip(images, augmentation_generator(1, 2, 3, 0))
    assert torch.equal(got, reference_crop_flip(images, augmentation_generator(1, 2, 3, 0)))
    assert got.shape == images.shape and not torch.equal(got, images)
    assert torch.equal(images, images.clone())  # the batch itself is not changed


def test_the_draw_depends_only_on_seed_agent_round_and_step():
    images = torch.randn(16, 3, 32, 32)
    a = crop_flip(images, augmentation_generator(1, 2, 3, 0))
    assert torch.equal(a, crop_flip(images, augmentation_generator(1, 2, 3, 0)))  # no hidden state: resumable
    for other in ((1, 2, 4, 0), (1, 3, 3, 0), (1, 2, 3, 1), (9, 2, 3, 0)):
        assert not torch.equal(a, crop_flip(images, augmentation_generator(*other)))


def masks_of(config, tmp_path, name):
    sim = Simulator(config, log=lambda _: None)
    sim.run(tmp_path / name, progress=False)
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [r["sent_digest"] for r in rows]


def test_augmented_training_is_reproducible_and_differs_from_plain(tmp_path):
    augmented = tiny_lab_config(rounds=2, **{"algorithm.augment": "crop-flip"})
    first, again = masks_of(augmented, tmp_path, "a"), masks_of(augmented, tmp_path, "b")
    assert first == again
    assert first != masks_of(tiny_lab_config(rounds=2), tmp_path, "plain")


def test_an_unknown_augmentation_is_one_line():
    with pytest.raises(UserError, match="algorithm.augment"):
        tiny_lab_config(**{"algorithm.augment": "mixup"})
