"""Rice-coded masks: lossless, near the entropy bound, and strict on hostile payloads."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_mcepl.wire import rice
from edge_mcepl.wire.masks import CODEC_RICE, CodecError, decode_masks, encode_masks, message_size

FP = bytes(range(16))


def entropy_bits(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3000), st.floats(0.0, 1.0)), min_size=1, max_size=4), st.integers(0, 2**31))
def test_round_trip_is_exact_for_any_density(layers, seed):
    rng = np.random.default_rng(seed)
    masks = [rng.random(n) < p for n, p in layers]
    data = encode_masks(masks, fingerprint=FP, sender=2, round=5, codec="rice")
    assert data[5] == CODEC_RICE
    msg = decode_masks(data, expected_fingerprint=FP, expected_shapes=[m.shape for m in masks])
    for a, b in zip(masks, msg.masks):
        assert np.array_equal(a, b)


def test_all_zero_all_one_and_multi_dimensional_masks():
    masks = [np.zeros((3, 4, 5), bool), np.ones((7, 9), bool), np.eye(6, dtype=bool)]
    msg = decode_masks(encode_masks(masks, fingerprint=FP, sender=0, round=0, codec="rice"))
    for a, b in zip(masks, msg.masks):
        assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.7, 0.9])  # (at 0.5 the bound is 1 bit: nothing to gain)
def test_size_is_within_a_few_percent_of_the_entropy_bound(p):
    n = 200_000
    mask = np.random.default_rng(1).random(n) < p
    bits = 8 * len(rice.encode_layer(mask))
    bound = n * entropy_bits(mask.mean())
    assert bound <= bits <= 1.04 * bound + 128
    assert bits < n  # always beats 1 bit per weight at these densities


def test_paper_model_masks_cost_fewer_bytes_than_packbits():
    rng = np.random.default_rng(3)
    shapes = [(64, 3, 5, 5), (128, 64, 5, 5), (256, 128, 5, 5), (192, 1024), (10, 192)]
    masks = [rng.random(s) < (0.3 if len(s) == 4 else 0.9) for s in shapes]
    rice_bytes = len(encode_masks(masks, fingerprint=FP, sender=0, round=0, codec="rice"))
    assert rice_bytes < 0.86 * message_size(shapes)  # ≈ 0.82 bits per weight instead of 1


def test_unknown_codec_name_is_refused():
    with pytest.raises(CodecError, match="unknown mask codec 'zip'"):
        encode_masks([np.ones(3, bool)], fingerprint=FP, sender=0, round=0, codec="zip")


def layer(mode: int, k: int, count: int, unary_bits: int, payload: bytes) -> bytes:
    return rice.LAYER_HEADER.pack(mode, k, count, unary_bits) + payload


@pytest.mark.parametrize("data, expected", [
    (b"\x00\x01", "truncated in its Rice header"),
    (layer(2, 0, 0, 0, b""), "bad Rice parameters"),
    (layer(0, 40, 0, 0, b""), "bad Rice parameters"),
    (layer(0, 0, 11, 11, b"\x00\x00"), "claims 11 symbols"),  # more symbols than entries
    (layer(0, 0, 2, 1, b"\x00"), "claims 2 symbols in 1 bits"),
    (layer(0, 0, 3, 10, b"\xff"), "truncated in its Rice payload"),
    (layer(0, 0, 1, 3, b"\x0b"), "nonzero padding bits"),  # bits 110 + a stray padding bit
    (layer(0, 0, 2, 3, b"\x04"), "exactly 2 terminated quotients"),  # bits 001: ends on a one
    (layer(0, 0, 1, 10, b"\xff\x03"), "exactly 1 terminated"),  # ten ones, no terminator
    (layer(0, 0, 1, 10, b"\xff\x00"), "exactly 1 terminated"),  # two terminators
])
def test_hostile_layers_are_rejected_with_a_reason(data, expected):
    with pytest.raises(CodecError, match=expected):
        rice.decode_layer(data, 0, (10,), "layer 0")


def test_a_position_past_the_end_is_rejected():
    # One symbol at gap 9 (quotient 9 in unary: nine ones then the terminator) fits 10 entries;
    # gap 10 does not.
    fits = layer(0, 0, 1, 10, np.packbits([1] * 9 + [0], bitorder="little").tobytes())
    mask, end = rice.decode_layer(fits, 0, (10,), "layer 0")
    assert mask.tolist() == [False] * 9 + [True] and end == len(fits)
    past = layer(0, 0, 1, 10, np.packbits([1] * 10, bitorder="little").tobytes())
    with pytest.raises(CodecError):
        rice.decode_layer(past, 0, (10,), "layer 0")
    past = layer(0, 0, 1, 11, np.packbits([1] * 10 + [0], bitorder="little").tobytes())
    with pytest.raises(CodecError, match="claims 1 symbols in 11 bits"):
        rice.decode_layer(past, 0, (10,), "layer 0")


def test_corrupted_or_extended_rice_messages_fail_the_envelope():
    mask = np.random.default_rng(0).random(500) < 0.3
    data = encode_masks([mask], fingerprint=FP, sender=0, round=0, codec="rice")
    for i in range(0, len(data), 5):
        bad = bytearray(data)
        bad[i] ^= 0x04
        with pytest.raises(CodecError):
            decode_masks(bytes(bad))
    with pytest.raises(CodecError):
        decode_masks(data + b"\0")
    with pytest.raises(CodecError):
        decode_masks(data[:-3])
