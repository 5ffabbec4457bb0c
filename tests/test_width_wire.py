"""A narrow agent's message carries bits for its block only, and a receiver takes exactly the valid blocks."""

from __future__ import annotations

import numpy as np
import pytest

from edge_mcepl.nn.width import width_shapes
from edge_mcepl.nn.zoo import build_model
from edge_mcepl.wire.masks import CodecError, decode_masks, encode_masks, message_size

FULL = build_model("alexnet-cifar").layer_shapes()
FP = bytes(16)


def _message(shapes, codec="packbits") -> bytes:
    gen = np.random.default_rng(0)
    return encode_masks([gen.random(s) < 0.3 for s in shapes], fingerprint=FP, sender=1, round=2, codec=codec)


@pytest.mark.parametrize("codec", ["packbits", "rice"])
def test_a_block_message_decodes_with_its_own_shapes(codec):
    shapes = width_shapes(FULL, 0.25)
    msg = decode_masks(_message(shapes, codec), expected_fingerprint=FP, expected_shapes=FULL, nested=True)
    assert [m.shape for m in msg.masks] == shapes


def test_bytes_shrink_with_the_width():
    full, half, quarter = (message_size(width_shapes(FULL, w)) for w in (1.0, 0.5, 0.25))
    assert half < 0.3 * full and quarter < 0.08 * full


def test_without_nested_a_block_is_a_shape_mismatch_and_an_unsound_block_is_refused_either_way():
    block = _message(width_shapes(FULL, 0.5))
    with pytest.raises(CodecError, match="shape mismatch at layer 0"):
        decode_masks(block, expected_fingerprint=FP, expected_shapes=FULL)
    unsound = _message([(32, 3, 5, 5), (64, 31, 5, 5), *width_shapes(FULL, 0.5)[2:]])
    with pytest.raises(CodecError, match=r"mask message: layer 1 has shape \(64, 31, 5, 5\), not an ordered-width"):
        decode_masks(unsound, expected_fingerprint=FP, expected_shapes=FULL, nested=True)
