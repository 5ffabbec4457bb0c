"""Ordered width's shapes: the block of each layer, exact filter counts, and which shapes are a valid block."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_mcepl.nn.width import check_nested, kept_filters, pad_to_full, width_shapes
from edge_mcepl.nn.zoo import build_model

ALEXNET = build_model("alexnet-cifar").layer_shapes()


def test_alexnet_half_width_keeps_the_leading_filters_and_the_channels_they_feed():
    assert width_shapes(ALEXNET, 0.5) == [(32, 3, 5, 5), (64, 32, 5, 5), (128, 64, 5, 5), (96, 512), (10, 96)]
    assert width_shapes(ALEXNET, 1.0) == ALEXNET


def test_filter_counts_are_exact_on_the_decimal_written():
    assert kept_filters(10, 0.3) == 3  # float 0.3·10 = 3.0000000000000004 would round up to 4
    assert kept_filters(64, 0.01) == 1 and kept_filters(64, 1.0) == 64


@given(st.integers(1, 16))
def test_every_width_gives_a_nested_block_and_widths_nest(k):
    w = k / 16
    shapes = width_shapes(ALEXNET, w)
    assert check_nested(shapes, ALEXNET) == shapes
    if k < 16:  # a narrower device's block is the leading corner of a wider one's
        wider = width_shapes(ALEXNET, (k + 1) / 16)
        assert all(all(a <= b for a, b in zip(s, t)) for s, t in zip(shapes, wider))


@pytest.mark.parametrize("shapes, message", [
    (ALEXNET[:4], "4 layers, this model has 5"),
    ([(32, 3, 5, 5), (64, 16, 5, 5), *ALEXNET[2:]], "layer 1 has shape (64, 16, 5, 5)"),  # inputs ≠ kept filters
    ([(65, 3, 5, 5), *ALEXNET[1:]], "layer 0 has shape (65, 3, 5, 5)"),  # more filters than the layer has
    ([*width_shapes(ALEXNET, 0.5)[:4], (5, 96)], "layer 4 has shape (5, 96)"),  # the classes are never cut
    ([(32, 3, 3, 3), *ALEXNET[1:]], "layer 0 has shape (32, 3, 3, 3)"),  # kernel size differs
])
def test_inconsistent_shapes_are_refused_naming_the_layer(shapes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_nested(shapes, ALEXNET)


def test_padding_puts_the_block_in_the_leading_corner():
    full = [(4, 3), (2, 4)]
    padded = pad_to_full([np.ones((2, 3)), np.ones((2, 2))], full)
    assert [p.shape for p in padded] == full
    assert padded[0][:2].all() and not padded[0][2:].any() and padded[1][:, :2].all() and not padded[1][:, 2:].any()
