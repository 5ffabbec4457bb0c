"""Sparse (masked fp32) codec of the Dis-PFL baseline: exact size, round trip, strict decoding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_mcepl.wire.masks import CodecError
from edge_mcepl.wire.sparse import decode_sparse_weights, encode_sparse_weights

FP = bytes(range(16))


def sparse(seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(3, 2, 3, 3), (5, 7), (9,)]
    masks = [rng.random(s) < 0.4 for s in shapes]
    tensors = [np.where(m, rng.standard_normal(s), 0).astype(np.float32) for m, s in zip(masks, shapes)]
    return masks, tensors


def test_sparse_round_trip_and_exact_size():
    masks, tensors = sparse()
    data = encode_sparse_weights(masks, tensors, fingerprint=FP, sender=3, round=9)
    header = 4 + 4 + 16 + 8 + 10 + sum(1 + 4 * m.ndim for m in masks)  # ... fingerprint, run id, ...
    assert len(data) == header + sum(math.ceil(m.size / 8) for m in masks) + 4 * sum(int(m.sum()) for m in masks) + 16
    msg = decode_sparse_weights(data, expected_fingerprint=FP, expected_shapes=[m.shape for m in masks])
    assert (msg.sender, msg.round) == (3, 9)
    for a, b, ma, mb in zip(tensors, msg.tensors, masks, msg.masks):
        assert np.array_equal(ma, mb) and a.tobytes() == b.tobytes()


def test_sparse_decoder_rejects_corruption_truncation_and_padding():
    masks, tensors = sparse(1)
    data = encode_sparse_weights(masks, tensors, fingerprint=FP, sender=3, round=9)
    for i in range(0, len(data), 7):
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(CodecError):
            decode_sparse_weights(bytes(bad))
    for cut in (10, len(data) - 20, len(data) - 1):
        with pytest.raises(CodecError):
            decode_sparse_weights(data[:cut])
    with pytest.raises(CodecError):
        decode_sparse_weights(data + b"\0\0\0\0")
    with pytest.raises(CodecError, match="3 layers, this model has 1"):
        decode_sparse_weights(data, expected_shapes=[(1,)])
    with pytest.raises(CodecError, match="shape mismatch at layer 1"):
        decode_sparse_weights(data, expected_shapes=[masks[0].shape, (7, 5), masks[2].shape])


def test_refuses_a_mask_that_does_not_fit_its_weights():
    masks, tensors = sparse()
    with pytest.raises(CodecError, match="layer 1: need a bool mask"):
        encode_sparse_weights([masks[0], masks[1].astype(np.uint8), masks[2]], tensors, fingerprint=FP, sender=0,
                              round=0)
    with pytest.raises(CodecError, match="one mask per weight tensor"):
        encode_sparse_weights(masks[:2], tensors, fingerprint=FP, sender=0, round=0)
