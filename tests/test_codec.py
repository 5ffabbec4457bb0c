"""Wire format v2: round trips, exact sizes, and strict rejection of every malformed message."""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_mcepl.errors import UserError
from edge_mcepl.wire.masks import (
    CODEC_PACKBITS,
    FORMAT_VERSION,
    MAGIC,
    CodecError,
    decode_masks,
    encode_masks,
    header_size,
    message_size,
)
from edge_mcepl.wire.signing import MessageAuth

from authsupport import KEYS, OTHER_RUN, ROSTER, RUN, receiver, signer

FP = bytes(range(16))
OTHER_FP = bytes(range(100, 116))
ALEXNET = [(64, 3, 5, 5), (128, 64, 5, 5), (256, 128, 5, 5), (192, 1024), (10, 192)]
# Offsets fixed by the layout: magic 4 | version 1 | codec 1 | flags 2 | fingerprint 16 | run id 8 | ...
VERSION_AT, CODEC_AT, FLAGS_AT, FP_AT = 4, 5, 6, 8


def random_masks(shapes, seed=0, density=0.5):
    rng = np.random.default_rng(seed)
    return [rng.random(shape) < density for shape in shapes]


def small_message(**kwargs):
    masks = random_masks([(3, 5), (7,), (2, 2, 3)], seed=1)
    return masks, encode_masks(masks, fingerprint=FP, sender=3, round=9, **kwargs)


def retag(body: bytes) -> bytes:
    """Recompute the (unsigned) integrity tag after tampering, so the test reaches the specific check."""
    return body + hashlib.blake2b(body, digest_size=16).digest()


def patched(message: bytes, offset: int, new: bytes) -> bytes:
    body = bytearray(message[:-16])
    body[offset : offset + len(new)] = new
    return retag(bytes(body))


def decode_error(data: bytes, **kwargs) -> str:
    with pytest.raises(CodecError) as info:
        decode_masks(data, **kwargs)
    return str(info.value)


# --- round trips and sizes ---------------------------------------------------------------------

shapes_strategy = st.lists(
    st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple), min_size=1, max_size=6
)


@settings(max_examples=60, deadline=None)
@given(
    shapes=shapes_strategy,
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.0, 1.0),
    sender=st.integers(0, 2**32 - 1),
    round_=st.integers(0, 2**32 - 1),
    fingerprint=st.binary(min_size=16, max_size=16),
    signed=st.booleans(),
)
def test_round_trip_random_shapes(shapes, seed, density, sender, round_, fingerprint, signed):
    sign = MessageAuth(RUN, KEYS[0], {sender: ROSTER[0]}) if signed else None
    masks = random_masks(shapes, seed, density)
    data = encode_masks(masks, fingerprint=fingerprint, sender=sender, round=round_, auth=sign)
    assert len(data) == message_size(shapes, signed=signed)
    msg = decode_masks(data, expected_fingerprint=fingerprint, expected_shapes=shapes, auth=sign)
    assert (msg.sender, msg.round, msg.fingerprint) == (sender, round_, fingerprint)
    assert len(msg.masks) == len(masks)
    for got, want in zip(msg.masks, masks):
        assert got.dtype == np.bool_ and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_alexnet_exact_size_and_round_trip():
    masks = random_masks(ALEXNET, seed=7, density=0.3)
    data = encode_masks(masks, fingerprint=FP, sender=1, round=2)
    fixed = 4 + 1 + 1 + 2 + 16 + 8 + 4 + 4 + 2
    shape_records = sum(1 + 4 * len(s) for s in ALEXNET)
    payload = sum(math.ceil(math.prod(s) / 8) for s in ALEXNET)
    expected = fixed + shape_records + payload + 16
    assert len(data) == expected == message_size(ALEXNET)
    assert header_size(ALEXNET) == fixed + shape_records
    assert data[:4] == MAGIC and data[4] == FORMAT_VERSION and data[5] == CODEC_PACKBITS
    msg = decode_masks(data, expected_fingerprint=FP, expected_shapes=ALEXNET)
    for got, want in zip(msg.masks, masks):
        np.testing.assert_array_equal(got, want)


def test_uint8_and_array_likes_encode_like_bool():
    masks = random_masks([(4, 6), (9,)], seed=2)
    as_bool = encode_masks(masks, fingerprint=FP, sender=0, round=0)
    as_uint8 = encode_masks([m.astype(np.uint8) for m in masks], fingerprint=FP, sender=0, round=0)
    as_lists = encode_masks(
        [m.astype(int).tolist() for m in masks], fingerprint=FP, sender=0, round=0
    )
    assert as_bool == as_uint8 == as_lists


def test_layout_puts_bits_little_endian_per_layer():
    data = encode_masks(
        [np.array([1, 0, 0, 0, 0, 0, 0, 0, 1], bool)], fingerprint=FP, sender=0, round=0
    )
    payload = data[header_size([(9,)]) : -16]
    assert payload == bytes([0b00000001, 0b00000001])


# --- encoder validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"fingerprint": b"short"}, "fingerprint must be 16 bytes, got 5"),
        ({"sender": -1}, "sender must be in 0..4294967295"),
        ({"round": 2**32}, "round must be in 0..4294967295"),
        ({"sender": 1.5}, "sender must be an integer"),
        ({"auth": receiver()}, "no signing key"),
    ],
)
def test_encode_rejects_bad_arguments(kwargs, fragment):
    args = {"fingerprint": FP, "sender": 0, "round": 0} | kwargs
    with pytest.raises(CodecError, match=fragment):
        encode_masks([np.ones(3, bool)], **args)


@pytest.mark.parametrize(
    "masks, fragment",
    [
        ([], "need 1 to 256 mask layers, got 0"),
        ([np.ones(2, bool)] * 257, "need 1 to 256 mask layers, got 257"),
        ([np.array([0, 1, 2])], "layer 0 has values other than 0 and 1"),
        ([np.ones(2, bool), np.array([0.0, 0.5])], "layer 1 has values other than 0 and 1"),
        ([np.array(True)], "layer 0 has ndim 0"),
        ([np.ones((0, 3), bool)], "layer 0 has shape"),
        ([np.array(["a"])], "layer 0 has dtype"),
    ],
)
def test_encode_rejects_bad_masks(masks, fragment):
    with pytest.raises(CodecError, match=fragment):
        encode_masks(masks, fingerprint=FP, sender=0, round=0)


def test_codec_error_is_a_user_error():
    assert issubclass(CodecError, UserError)


# --- decoder rejection -------------------------------------------------------------------------


def test_every_truncation_is_a_codec_error():
    _, data = small_message()
    for n in range(len(data)):
        with pytest.raises(CodecError, match="truncated"):
            decode_masks(data[:n])


def test_every_flipped_byte_is_a_codec_error():
    _, data = small_message()
    for i in range(len(data)):
        corrupt = bytearray(data)
        corrupt[i] ^= 0x40
        with pytest.raises(CodecError):
            decode_masks(bytes(corrupt))


def test_flipped_payload_byte_is_reported_as_tampering():
    _, data = small_message()
    corrupt = bytearray(data)
    corrupt[-17] ^= 0x01
    assert "corrupt or tampered" in decode_error(bytes(corrupt))


def test_bad_magic():
    _, data = small_message()
    assert "bad magic b'XXXX'" in decode_error(patched(data, 0, b"XXXX"))


def test_unsupported_version():
    _, data = small_message()
    assert "unsupported mask format version 1" in decode_error(patched(data, VERSION_AT, b"\x01"))


def test_unknown_codec_id():
    _, data = small_message()
    assert "unknown mask codec id 7" in decode_error(patched(data, CODEC_AT, b"\x07"))


def test_unknown_flag_bits():
    _, data = small_message()
    assert "unknown mask message flag bits" in decode_error(
        patched(data, FLAGS_AT, struct.pack("<H", 0x8000))
    )


def header(n_layers: int, flags: int = 0) -> bytes:
    fields = (FORMAT_VERSION, CODEC_PACKBITS, flags, FP, bytes(8), 0, 0, n_layers)
    return MAGIC + struct.pack("<BBH16s8sIIH", *fields)


@pytest.mark.parametrize("n_layers", [0, 257, 65535])
def test_layer_count_out_of_range(n_layers):
    assert f"declares {n_layers} layers" in decode_error(retag(header(n_layers)))


@pytest.mark.parametrize("ndim", [0, 9, 255])
def test_ndim_out_of_range(ndim):
    body = header(1) + struct.pack("<B", ndim) + b"\x01\x00\x00\x00" * 9 + b"\x00" * 4
    assert f"layer 0 has ndim {ndim}" in decode_error(retag(body))


def test_zero_dimension():
    body = header(1) + struct.pack("<B2I", 2, 4, 0)
    assert "layer 0 has a zero dimension" in decode_error(retag(body))


def test_huge_declared_dims_rejected_before_allocating():
    body = header(2) + struct.pack("<B2I", 2, 2**31, 2**31) + struct.pack("<BI", 1, 2**32 - 1)
    message = decode_error(retag(body))  # allocating 2^62 bools first would raise MemoryError
    assert "more than max_entries" in message


def test_max_entries_is_enforced():
    _, data = small_message()  # 15 + 7 + 12 = 34 entries
    assert "declares 34 entries, more than max_entries=33" in decode_error(data, max_entries=33)
    assert len(decode_masks(data, max_entries=34).masks) == 3


def test_short_payload_is_truncated_even_with_valid_tag():
    _, data = small_message()
    message = decode_error(retag(data[:-17]))
    assert "truncated: header says 5 payload bytes + 16-byte tag, got 20" in message


def test_trailing_bytes():
    _, data = small_message()
    assert "1 trailing bytes" in decode_error(data + b"\x00")
    assert "1 trailing bytes" in decode_error(retag(data[:-16] + b"\x00"))


def test_nonzero_padding_bits_rejected_with_valid_tag():
    _, data = small_message()
    # Layer 0 is 3x5 = 15 bits: 2 bytes, the top bit of the second byte is padding.
    start = header_size([(3, 5), (7,), (2, 2, 3)])
    body = bytearray(data[:-16])
    body[start + 1] |= 0x80
    assert "layer 0: nonzero padding bits" in decode_error(retag(bytes(body)))


def test_fingerprint_mismatch_names_both():
    _, data = small_message()
    message = decode_error(data, expected_fingerprint=OTHER_FP)
    assert message == (
        f"weights fingerprint mismatch: message has {FP[:4].hex()}…, "
        f"this agent has {OTHER_FP[:4].hex()}…"
    )


def test_shape_mismatch_names_layer_and_shapes():
    _, data = small_message()
    message = decode_error(data, expected_shapes=[(3, 5), (8,), (2, 2, 3)])
    assert message == "mask shape mismatch at layer 1: message has (7,), this model has (8,)"
    assert "has 3 layers, this model has 2" in decode_error(data, expected_shapes=[(3, 5), (7,)])


def test_a_signed_message_needs_the_roster():
    masks, data = small_message(auth=signer(3))
    assert "signed (a lab's message, not a file): checking it needs the lab's roster" in decode_error(data)
    msg = decode_masks(data, auth=receiver())
    np.testing.assert_array_equal(msg.masks[2], masks[2])


def test_an_unsigned_message_is_refused_by_a_lab():
    _, data = small_message()
    assert "unsigned: this lab accepts only messages signed by their sender" in decode_error(data, auth=receiver())


def test_a_message_signed_by_another_agent_is_refused():
    masks = random_masks([(3, 5)], seed=1)
    forged = encode_masks(masks, fingerprint=FP, sender=3, round=9, auth=signer(5))  # agent 5 signs as agent 3
    assert "does not verify as agent 3's: forged or tampered" in decode_error(forged, auth=receiver())


def test_a_tampered_signed_message_is_refused():
    _, data = small_message(auth=signer(3))
    corrupt = bytearray(data)
    corrupt[-65] ^= 0x01  # the last payload byte
    assert "forged or tampered" in decode_error(bytes(corrupt), auth=receiver())


def test_a_message_of_another_run_is_refused():
    _, data = small_message(auth=signer(3, run=OTHER_RUN))
    assert f"of run {OTHER_RUN.hex()}, this lab runs {RUN.hex()}" in decode_error(data, auth=receiver())


def test_decode_rejects_non_bytes_and_bad_arguments():
    _, data = small_message()
    assert "must be bytes, got str" in decode_error("MCPL")
    assert "expected_fingerprint must be 16 bytes" in decode_error(data, expected_fingerprint=b"x")
    assert decode_masks(bytearray(data)).sender == decode_masks(memoryview(data)).sender == 3


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        # A plausible fixed-header start gets the fuzz past the magic/version checks.
        st.binary(max_size=200).map(lambda rest: MAGIC + b"\x02\x01\x00\x00" + rest),
    )
)
def test_arbitrary_bytes_decode_or_codec_error(data):
    try:
        decode_masks(data)
    except CodecError:
        pass


@settings(max_examples=300, deadline=None)
@given(prefix_len=st.integers(0, 80), tail=st.binary(max_size=80))
def test_valid_prefix_with_arbitrary_tail_decodes_or_codec_error(prefix_len, tail):
    _, data = small_message()
    candidate = retag(data[:prefix_len] + tail)
    try:
        msg = decode_masks(candidate)
    except CodecError:
        return
    assert all(m.dtype == np.bool_ for m in msg.masks)
