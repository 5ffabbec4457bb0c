"""fp32 weight wire format (DSGD baseline): exact round trip, exact size, strict rejection."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge_mcepl.wire.dense import MAGIC, decode_weights, encode_weights, message_size
from edge_mcepl.wire.masks import CodecError, encode_masks

FP = bytes(range(16))
SHAPES = [(3, 2, 3, 3), (5, 7), (4,)]


def tensors(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def test_round_trip_is_bit_exact_and_size_is_exact():
    ts = tensors()
    data = encode_weights(ts, fingerprint=FP, sender=7, round=42)
    assert len(data) == message_size(SHAPES)
    # 4 bytes per weight + header + tag: the "32 bits per parameter" of docs/algorithm.md#communication.
    assert len(data) - 4 * sum(t.size for t in ts) == message_size(SHAPES) - 4 * sum(t.size for t in ts) < 100
    msg = decode_weights(data, expected_fingerprint=FP, expected_shapes=SHAPES)
    assert (msg.sender, msg.round, msg.fingerprint) == (7, 42, FP)
    for a, b in zip(ts, msg.tensors):
        assert a.tobytes() == b.tobytes() and b.dtype == np.float32


def test_every_single_byte_flip_is_rejected():
    data = bytearray(encode_weights([np.ones((2, 3), np.float32)], fingerprint=FP, sender=1, round=2))
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(CodecError):
            decode_weights(bytes(bad))


@pytest.mark.parametrize("cut", [0, 5, 20, 40, -17, -1])
def test_truncated_or_padded_messages_are_rejected(cut):
    data = encode_weights(tensors(), fingerprint=FP, sender=1, round=2)
    with pytest.raises(CodecError):
        decode_weights(data[:cut])
    with pytest.raises(CodecError):
        decode_weights(data + b"\0")


def test_wrong_fingerprint_shapes_magic_and_mask_messages_are_rejected():
    data = encode_weights(tensors(), fingerprint=FP, sender=1, round=2)
    with pytest.raises(CodecError, match="fingerprint"):
        decode_weights(data, expected_fingerprint=bytes(16))
    with pytest.raises(CodecError, match="3 layers, this model has 2"):
        decode_weights(data, expected_shapes=SHAPES[:2])
    with pytest.raises(CodecError, match="shape mismatch at layer 0"):
        decode_weights(data, expected_shapes=[(9, 9), *SHAPES[1:]])
    mask_message = encode_masks([np.ones((3, 3), bool)], fingerprint=FP, sender=1, round=2)
    with pytest.raises(CodecError, match="magic"):
        decode_weights(mask_message)
    assert data[:4] == MAGIC


def test_huge_declared_shape_is_rejected_before_allocating():
    data = bytearray(encode_weights([np.ones((2,), np.float32)], fingerprint=FP, sender=1, round=2))
    header = 4 + 4 + 16 + 10
    struct.pack_into("<I", data, header + 1, 2**31)  # layer 0 now claims 2^31 entries
    with pytest.raises(CodecError):
        decode_weights(bytes(data))


def test_non_finite_values_are_refused_on_encode_and_decode():
    bad = [np.array([1.0, np.nan], np.float32)]
    with pytest.raises(CodecError, match="non-finite"):
        encode_weights(bad, fingerprint=FP, sender=1, round=2)
    good = bytearray(encode_weights([np.array([1.0, 2.0], np.float32)], fingerprint=FP, sender=1, round=2))
    # Forge a NaN with a valid (unkeyed) tag: the decoder must still refuse it.
    import hashlib
    body = bytearray(good[:-16])
    struct.pack_into("<f", body, len(body) - 4, float("inf"))
    forged = bytes(body) + hashlib.blake2b(bytes(body), digest_size=16).digest()
    with pytest.raises(CodecError, match="non-finite"):
        decode_weights(forged)


def test_non_float_input_is_refused():
    with pytest.raises(CodecError):
        encode_weights([np.ones((2,), np.int32)], fingerprint=FP, sender=1, round=2)
