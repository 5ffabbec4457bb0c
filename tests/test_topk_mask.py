"""TopK keeps exactly n − ⌊(1−r)·n⌋ of the largest entries of each layer, ties deterministic.

docs/algorithm.md#kept-count
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.nn.layers import MaskedConv2d
from edge_mcepl.nn.masking import kept_count, topk_mask
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.zoo import AlexNetCifar

shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7)
ratios = st.floats(min_value=1e-3, max_value=1.0, allow_nan=False)


def expected_mask(values: np.ndarray, keep: int) -> np.ndarray:
    """Reference: stable order by (value descending, flat index ascending), first ``keep`` kept."""
    flat = values.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:keep]] = True
    return mask.reshape(values.shape)


def as_bool(mask: torch.Tensor) -> np.ndarray:
    values = mask.detach().to(torch.float64).numpy()
    assert set(np.unique(values)) <= {0.0, 1.0}, "a mask must be binary"
    return values.astype(bool)


def test_kept_count_is_n_minus_floor_of_dropped():
    for n in (1, 2, 3, 10, 4800, 1920, 196608):
        for r in (0.01, 0.1, 0.3, 0.5, 0.9, 1.0):
            keep = kept_count(n, r)
            assert keep == n - math.floor((1 - Fraction(str(r))) * n)  # exact, on the decimal written
            assert 1 <= keep <= n
            assert abs(keep - r * n) <= 1


def test_kept_count_is_exact_where_floating_point_is_not():
    # (1 − 0.9)·1280 is 127.99… in float64: the float formula would keep 1,153 of 1,280.
    assert math.floor((1.0 - 0.9) * 1280) == 127
    assert kept_count(1280, 0.9) == 1152
    assert kept_count(10, 0.9) == 9 and kept_count(10, 0.7) == 7 and kept_count(4800, 0.3) == 1440
    mask = topk_mask(torch.rand(1280, generator=torch.Generator().manual_seed(0)), 0.9)
    assert int(mask.sum()) == 1152


@settings(max_examples=150, deadline=None)
@given(shape=shapes, r=ratios, data=st.data())
def test_keeps_exact_count_of_largest_entries(shape, r, data):
    values = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-1e3, 1e3, width=32)))
    magnitude = torch.from_numpy(np.abs(values))
    before = magnitude.clone()
    mask = as_bool(topk_mask(magnitude, r))
    assert mask.shape == values.shape
    keep = kept_count(values.size, r)
    assert mask.sum() == keep
    flat, kept = magnitude.numpy().reshape(-1), mask.reshape(-1)
    if 0 < keep < flat.size:
        assert flat[kept].min() >= flat[~kept].max()
    assert torch.equal(magnitude, before), "topk_mask must not modify its input"


@settings(max_examples=150, deadline=None)
@given(shape=shapes, r=ratios, data=st.data())
def test_ties_keep_lowest_flat_indices(shape, r, data):
    # Small integer values: nearly every entry is tied with many others.
    values = data.draw(hnp.arrays(np.float32, shape, elements=st.integers(0, 3).map(float)))
    mask = as_bool(topk_mask(torch.from_numpy(values), r))
    np.testing.assert_array_equal(mask, expected_mask(values, kept_count(values.size, r)))


@pytest.mark.parametrize("shape", [(1,), (7,), (10, 10), (64, 3, 5, 5), (1000,)])
@pytest.mark.parametrize("r", [0.05, 0.3, 0.5, 0.9])
def test_all_equal_input_keeps_first_entries(shape, r):
    magnitude = torch.full(shape, 0.25)
    mask = as_bool(topk_mask(magnitude, r)).reshape(-1)
    keep = kept_count(mask.size, r)
    assert mask[:keep].all() and not mask[keep:].any()


def test_large_tensor_with_ties_keeps_exact_count_and_lowest_indices():
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 50, (256, 128, 5, 5), generator=gen).float()
    mask = as_bool(topk_mask(values, 0.3))
    np.testing.assert_array_equal(mask, expected_mask(values.numpy(), kept_count(values.numel(), 0.3)))


def large_inputs():
    """Big layers (the selection may take a different route above some size), with awkward layouts."""
    n = 300_007
    gen = torch.Generator().manual_seed(2)
    uniform = torch.rand(n, generator=gen)
    spiky = torch.rand(n, generator=gen) * 1e-3
    spiky[:: n // 4096] = 1e3  # every regularly spaced entry huge: a strided sample sees only these
    mostly_zero = torch.zeros(n)
    mostly_zero[torch.randperm(n, generator=gen)[: n // 10]] = torch.rand(n // 10, generator=gen)
    return {
        "uniform": uniform,
        "ascending": torch.sort(uniform).values,
        "descending": torch.sort(uniform, descending=True).values,
        "strided-spikes": spiky,
        "strided-dips": 1.0 - spiky * 1e-3,
        "mostly-zero": mostly_zero,
        "few-values": torch.randint(0, 3, (n,), generator=gen).float(),
        "float64": torch.rand(n, generator=gen, dtype=torch.float64),
    }


LARGE = large_inputs()


@pytest.mark.parametrize("name", sorted(LARGE))
@pytest.mark.parametrize("r", [0.001, 0.3, 0.9, 0.999])
def test_large_inputs_match_a_full_stable_sort(name, r):
    values = LARGE[name]
    mask = as_bool(topk_mask(values, r))
    np.testing.assert_array_equal(mask, expected_mask(values.numpy(), kept_count(values.numel(), r)))


def test_non_contiguous_input_is_read_in_logical_order():
    gen = torch.Generator().manual_seed(1)
    base = torch.randint(0, 4, (6, 9), generator=gen).float()
    view = base.t()  # non-contiguous: flat (row-major) order of the view differs from memory order
    assert not view.is_contiguous()
    for r in (0.2, 0.5, 0.75):
        mask = as_bool(topk_mask(view, r))
        np.testing.assert_array_equal(mask, expected_mask(view.contiguous().numpy(), kept_count(54, r)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ratio_one_keeps_everything(dtype):
    magnitude = torch.rand(5, 4, 3, dtype=dtype)
    mask = topk_mask(magnitude, 1.0)
    assert mask.shape == magnitude.shape
    assert bool((mask == 1).all())


def test_alexnet_reference_ratios_keep_487316_weights():
    # The float formula kept 487,317 (fc2: 1,729 of 1,920 at r = 0.9); the exact count is 1,728.
    model = AlexNetCifar()
    shapes = {name: layer.weight.numel() for name, layer in model.masked_layers()}
    ratio = {name: 0.3 if isinstance(layer, MaskedConv2d) else 0.9 for name, layer in model.masked_layers()}
    assert sum(shapes.values()) == 1_227_328
    assert sum(kept_count(n, ratio[name]) for name, n in shapes.items()) == 487_316

    # And the real per-layer masks of an initialised agent keep exactly that many, layer by layer.
    load_fixed_weights(model, generate_fixed_weights(model, "alexnet-cifar", 1234))
    rule = MCEPL(model, MCEPLParams(), Retention(conv=0.3, linear=0.9), seed=1234)
    counts = {name: int(state.mask().sum()) for (name, _), state in zip(model.masked_layers(), rule.layers)}
    assert counts == {name: kept_count(n, ratio[name]) for name, n in shapes.items()}
    assert sum(counts.values()) == 487_316
