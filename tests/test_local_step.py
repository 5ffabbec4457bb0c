"""One local step is z ← z − η(g + λ_wd·z) [+ group lasso λ·y_g/‖y_g‖]; g stays task-only.

docs/algorithm.md#round (step 1)
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.nn.masking import kept_count

from conftest import dense_tiny_forward


def batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 4, (8,), generator=gen)


def reference_mask(z: torch.Tensor, m_bar: torch.Tensor, r: float) -> torch.Tensor:
    """TopK of |z + mean|z|·sign(z)⊙m̄| by a full stable sort (independent of topk_mask)."""
    y = (z + z.abs().mean() * torch.sign(z) * m_bar).abs().reshape(-1).numpy()
    order = np.lexsort((np.arange(y.size), -y))
    mask = np.zeros(y.size, dtype=np.float32)
    mask[order[: kept_count(y.size, r)]] = 1
    return torch.from_numpy(mask).reshape(z.shape)


def expected_update(model, rule, images, labels, params: MCEPLParams):
    """(new scores, task gradient, loss) computed by hand from a dense reconstruction v = w ⊙ m."""
    fc = model.fc
    names = [name for name, _ in model.masked_layers()]
    z = {name: state.scores.detach().clone() for name, state in zip(names, rule.layers)}
    m_bar = {name: state.neighbour_mean.clone() for name, state in zip(names, rule.layers)}
    w = {name: layer.weight.clone() for name, layer in model.masked_layers()}
    ratio = {"conv": 0.5, "fc": 0.8}
    v = {name: (w[name] * reference_mask(z[name], m_bar[name], ratio[name])).requires_grad_(True) for name in z}
    logits = dense_tiny_forward(images, v["conv"], v["fc"], fc.bias)
    if params.elu_logits:
        logits = F.elu(logits)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    new, grads = {}, {}
    for name in z:
        g = torch.sign(z[name]) * w[name] * v[name].grad
        step = g + params.weight_decay * z[name]
        if params.group_lasso > 0:
            y = (z[name] + z[name].abs().mean() * torch.sign(z[name]) * m_bar[name]).double()
            rows = y.reshape(y.shape[0], -1)
            step = step + (params.group_lasso * rows / rows.norm(dim=1, keepdim=True)).reshape(y.shape).float()
        new[name], grads[name] = z[name] - params.lr * step, g
    return new, grads, float(loss.detach())


CASES = [
    MCEPLParams(lr=10.0, weight_decay=5e-4, elu_logits=True),
    MCEPLParams(lr=3.0, weight_decay=0.0, elu_logits=False),
    MCEPLParams(lr=10.0, weight_decay=5e-4, elu_logits=True, group_lasso=1e-2),
    MCEPLParams(lr=2.0, weight_decay=0.0, elu_logits=False, group_lasso=0.5),
]


@pytest.mark.parametrize("params", CASES, ids=["reference", "no-wd", "group-lasso", "group-lasso-no-wd"])
def test_local_step_matches_hand_computed_update(tiny_net, params):
    rule = MCEPL(tiny_net, params, Retention(conv=0.5, linear=0.8), seed=4)
    assert any(bool(state.neighbour_mean.any()) for state in rule.layers), "y ≠ z in this test"
    images, labels = batch()
    new, grads, loss = expected_update(tiny_net, rule, images, labels, params)

    returned = rule.local_step(images, labels)

    assert returned == pytest.approx(loss, rel=1e-5)
    for (name, _), layer in zip(tiny_net.masked_layers(), rule.layers):
        torch.testing.assert_close(layer.scores.grad, grads[name], rtol=1e-5, atol=1e-7,
                                   msg=f"{name}: scores.grad must be the task-loss gradient only")
        torch.testing.assert_close(layer.scores.detach(), new[name], rtol=1e-5, atol=1e-6,
                                   msg=f"{name}: updated scores")


def test_group_lasso_changes_the_update_by_exactly_its_gradient(tiny_net):
    plain, lasso = tiny_net, copy.deepcopy(tiny_net)
    base = MCEPLParams(lr=1.0, weight_decay=5e-4, elu_logits=False)
    plain_rule = MCEPL(plain, base, Retention(0.5, 0.8), seed=4)
    lasso_rule = MCEPL(lasso, MCEPLParams(lr=1.0, weight_decay=5e-4, elu_logits=False, group_lasso=0.1),
                       Retention(0.5, 0.8), seed=4)
    plain_rule.local_step(*batch(1))
    lasso_rule.local_step(*batch(1))
    for a, b in zip(plain_rule.layers, lasso_rule.layers):
        assert torch.equal(a.scores.grad, b.scores.grad)
        diff = (a.scores - b.scores).detach().reshape(a.scores.shape[0], -1)
        # each output filter / row moved by λ·(unit vector): its extra displacement has norm λ
        torch.testing.assert_close(diff.norm(dim=1), torch.full((diff.shape[0],), 0.1), rtol=1e-4, atol=1e-6)
