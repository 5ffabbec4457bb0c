"""The filter-drop rule zeroes every output filter / row keeping ≤ min_kept_per_filter ones.

docs/algorithm.md#filter-drop
"""

from __future__ import annotations

import pytest
import torch

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.algorithms.score_mask import ScoreMask
from edge_mcepl.nn.masking import drop_sparse_filters, kept_count, topk_mask


def mask_with_row_counts(counts, row_len, trailing=None):
    """A 0/1 mask whose row i has counts[i] ones (at pseudo-random positions)."""
    gen = torch.Generator().manual_seed(sum(counts))
    rows = []
    for c in counts:
        row = torch.zeros(row_len)
        row[torch.randperm(row_len, generator=gen)[:c]] = 1
        rows.append(row)
    return torch.stack(rows).reshape((len(counts),) + (trailing or (row_len,)))


@pytest.mark.parametrize("trailing", [(12,), (3, 2, 2)], ids=["linear", "conv"])
def test_drops_exactly_the_sparse_filters(trailing):
    counts = [0, 1, 4, 5, 6, 12, 3, 5]
    mask = mask_with_row_counts(counts, 12, trailing)
    out = drop_sparse_filters(mask, 5)
    assert out.shape == mask.shape
    for i, c in enumerate(counts):
        if c <= 5:
            assert not bool(out[i].any()), f"filter {i} with {c} ones must be dropped"
        else:
            assert torch.equal(out[i], mask[i]), f"filter {i} with {c} ones must be untouched"


def test_threshold_zero_drops_only_empty_filters():
    mask = mask_with_row_counts([0, 1, 2], 4)
    out = drop_sparse_filters(mask, 0)
    assert torch.equal(out, mask)
    assert int(out[1].sum()) == 1


def test_masked_conv_with_min_kept_produces_dropped_filters():
    gen = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 1.0, 0.3, 0.3, 0.2, 1.0, 0.1, 0.6]).reshape(8, 1, 1, 1)
    scores = (torch.rand(8, 2, 3, 3, generator=gen) + 0.01) * scale  # a conv layer of 8 filters × 18 weights
    layer = ScoreMask(scores, torch.zeros(8, 2, 3, 3), 0.4)
    plain = topk_mask(layer.aggregation_tensor().abs(), 0.4)
    assert int(plain.sum()) == kept_count(144, 0.4)

    layer.min_kept_per_filter = 6
    mask = layer.mask()
    per_filter = plain.reshape(8, -1).sum(dim=1)
    assert bool((per_filter <= 6).any()) and bool((per_filter > 6).any()), "the case must drop some, keep others"
    for f in range(8):
        if per_filter[f] <= 6:
            assert not bool(mask[f].any())
        else:
            assert torch.equal(mask[f], plain[f])
    # Turning the rule off again restores the plain top-k mask.
    layer.min_kept_per_filter = None
    assert torch.equal(layer.mask(), plain)


def test_rule_parameter_reaches_every_layer(tiny_net):
    rule = MCEPL(tiny_net, MCEPLParams(min_kept_per_filter=7), Retention(0.2, 0.2), seed=1)
    alive = dead = 0
    for layer in rule.layers:
        assert layer.min_kept_per_filter == 7
        rows = layer.mask().reshape(layer.scores.shape[0], -1).sum(dim=1)
        assert bool(((rows == 0) | (rows > 7)).all())
        alive, dead = alive + int((rows > 0).sum()), dead + int((rows == 0).sum())
    assert alive > 0 and dead > 0
