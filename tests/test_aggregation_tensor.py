"""y = z + mean|z|·sign(z)⊙m̄ — neighbours' votes add magnitude; off in the ablation.

docs/algorithm.md#aggregation-tensor
"""

from __future__ import annotations

import torch

from edge_mcepl.algorithms.score_mask import ScoreMask
from edge_mcepl.nn.masking import aggregation_magnitude, aggregation_tensor


def random_case(seed: int, shape=(6, 5)):
    gen = torch.Generator().manual_seed(seed)
    z = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1)
    m_bar = torch.randint(0, 5, shape, generator=gen).double() / 4  # votes in {0, ¼, ½, ¾, 1}
    return z, m_bar


def test_magnitude_gains_mean_abs_times_votes_and_sign_is_kept():
    for seed in range(5):
        z, m_bar = random_case(seed)
        y = aggregation_tensor(z, m_bar)
        a = z.abs().sum() / z.numel()
        torch.testing.assert_close(y.abs(), z.abs() + a * m_bar, rtol=1e-12, atol=1e-12)
        assert torch.equal(torch.sign(y), torch.sign(z))


def test_magnitude_shortcut_equals_abs_of_aggregation_tensor():
    for seed in range(5):
        z, m_bar = random_case(seed)
        z_before = z.clone()
        torch.testing.assert_close(aggregation_magnitude(z, m_bar), aggregation_tensor(z, m_bar).abs(),
                                   rtol=1e-12, atol=1e-12)
        assert torch.equal(aggregation_magnitude(z, None), z.abs())
        assert torch.equal(z, z_before), "scores must not be modified"


def test_result_carries_no_gradient():
    z = torch.tensor([0.5, -0.2, 0.1], requires_grad=True)
    y = aggregation_tensor(z, torch.tensor([1.0, 0.0, 0.5]))
    assert not y.requires_grad


def test_no_aggregation_ablation_gives_scores():
    z, m_bar = random_case(7)
    assert torch.equal(aggregation_tensor(z, None), z)
    layer = ScoreMask(z.float(), m_bar.float(), 1.0)
    assert not torch.equal(layer.aggregation_tensor(), layer.scores.detach())
    layer.use_aggregation_tensor = False
    assert torch.equal(layer.aggregation_tensor(), layer.scores.detach())


def make_layer(z, m_bar, r):
    """One 1×n linear layer's MCE-PL mask state."""
    return ScoreMask(z.reshape(1, -1), m_bar.reshape(1, -1).clone(), r)


def test_neighbour_votes_flip_which_entries_are_kept():
    z = torch.tensor([0.5, -0.4, 0.3, -0.2])  # mean|z| = 0.35
    votes = torch.tensor([0.0, 0.0, 1.0, 1.0])  # |y| = 0.5, 0.4, 0.65, 0.55
    layer = make_layer(z, votes, r=0.5)
    assert layer.mask().reshape(-1).tolist() == [0.0, 0.0, 1.0, 1.0]

    layer.use_aggregation_tensor = False  # ablation: the votes are ignored
    assert layer.mask().reshape(-1).tolist() == [1.0, 1.0, 0.0, 0.0]

    # Half the neighbours keeping entry 3 is not enough to beat entry 1: |y| = .5, .4, .475, .375
    half = make_layer(z, torch.tensor([0.0, 0.0, 0.5, 0.5]), r=0.5)
    assert half.mask().reshape(-1).tolist() == [1.0, 0.0, 1.0, 0.0]


def test_mask_follows_in_place_updates_of_votes_and_scores():
    z = torch.tensor([0.5, -0.4, 0.3, -0.2])
    layer = make_layer(z, torch.zeros(4), r=0.5)
    assert layer.mask().reshape(-1).tolist() == [1.0, 1.0, 0.0, 0.0]
    layer.neighbour_mean.copy_(torch.tensor([[0.0, 0.0, 1.0, 1.0]]))  # in place, same tensor object
    assert layer.mask().reshape(-1).tolist() == [0.0, 0.0, 1.0, 1.0]
    with torch.no_grad():
        layer.scores.mul_(torch.tensor([[1.0, 1.0, 0.1, 0.1]]))  # in place: entries 2, 3 shrink
    # mean|z| = 0.2375, |y| = 0.5, 0.4, 0.2675, 0.2575 → entries 0 and 1 again
    assert layer.mask().reshape(-1).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_mask_follows_reassigned_votes():
    # MCEPL.aggregate assigns a fresh m̄ tensor every round. Whatever tensors came before (and were
    # freed), the mask must be computed from the m̄ the layer holds now.
    z = torch.tensor([0.5, -0.4, 0.3, -0.2])
    layer = make_layer(z, torch.zeros(4), r=0.5)
    for trial in range(50):
        layer.neighbour_mean = torch.zeros(1, 4)
        assert layer.mask().reshape(-1).tolist() == [1.0, 1.0, 0.0, 0.0]
        layer.neighbour_mean = torch.zeros(1, 4)
        layer.neighbour_mean = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        assert layer.mask().reshape(-1).tolist() == [0.0, 0.0, 1.0, 1.0], f"stale mask at trial {trial}"
