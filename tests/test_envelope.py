"""The shared envelope: all three payload codecs read and check the same header the same way."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge_mcepl.wire.dense import decode_weights, encode_weights
from edge_mcepl.wire.envelope import COMMON, FIXED, CodecError, SignatureError, WrongRun, read_common_header
from edge_mcepl.wire.masks import decode_masks, encode_masks
from edge_mcepl.wire.sparse import decode_sparse_weights, encode_sparse_weights

from authsupport import OTHER_RUN, RUN, receiver, signer

FP = bytes(range(16))
SHAPES = [(4, 3, 3), (6,)]
RNG = np.random.default_rng(0)
MASKS = [RNG.random(s) < 0.5 for s in SHAPES]
VALUES = [RNG.standard_normal(s).astype(np.float32) for s in SHAPES]

CODECS = {
    "mask": (lambda **kw: encode_masks(MASKS, **kw), decode_masks),
    "weight": (lambda **kw: encode_weights(VALUES, **kw), decode_weights),
    "sparse weight": (lambda **kw: encode_sparse_weights(MASKS, [v * m for v, m in zip(VALUES, MASKS)], **kw),
                      decode_sparse_weights),
}


def patched(data: bytes, fmt: str, offset: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize("kind", CODECS)
def test_header_defects_are_named_the_same_way_by_every_codec(kind):
    encode, decode = CODECS[kind]
    data = encode(fingerprint=FP, sender=7, round=3)
    cases = {
        "unsupported": patched(data, "<B", 4, 9),  # version
        "unknown .*codec id": patched(data, "<B", 5, 200),
        "flag bits": patched(data, "<H", 6, 0x8000),
        "declares 0 layers": patched(data, "<H", FIXED.size - 2, 0),
        "ndim 0": patched(data, "<B", FIXED.size, 0),
        "truncated": data[: FIXED.size - 1],
        "signed .* needs the lab's roster": encode(fingerprint=FP, sender=7, round=3, auth=signer(7)),
        "tag mismatch": data[:-1] + bytes([data[-1] ^ 1]),
    }
    for expected, message in cases.items():
        with pytest.raises(CodecError, match=expected):
            decode(message)
    with pytest.raises(SignatureError, match="unsigned: this lab accepts only"):
        decode(data, auth=receiver())
    with pytest.raises(CodecError, match="bad magic"):
        decode(b"XXXX" + data[4:])


@pytest.mark.parametrize("kind", CODECS)
def test_sender_round_signature_and_run_survive_every_codec(kind):
    encode, decode = CODECS[kind]
    msg = decode(encode(fingerprint=FP, sender=7, round=3, auth=signer(7)), expected_fingerprint=FP,
                 expected_shapes=SHAPES, auth=receiver())
    assert (msg.sender, msg.round, msg.fingerprint) == (7, 3, FP)
    with pytest.raises(SignatureError, match="forged or tampered"):
        decode(encode(fingerprint=FP, sender=7, round=3, auth=signer(6)), auth=receiver())
    with pytest.raises(WrongRun, match="this lab runs"):
        decode(encode(fingerprint=FP, sender=7, round=3, auth=signer(7, OTHER_RUN)), auth=receiver())


@pytest.mark.parametrize("kind", CODECS)
def test_encoders_refuse_bad_header_arguments(kind):
    encode, _ = CODECS[kind]
    for kwargs, expected in [({"fingerprint": b"short"}, "fingerprint must be 16 bytes"),
                             ({"sender": -1}, "sender must be in"), ({"round": 2**32}, "round must be in"),
                             ({"auth": receiver()}, "no signing key")]:
        args = {"fingerprint": FP, "sender": 0, "round": 0, **kwargs}
        with pytest.raises(CodecError, match=expected):
            encode(**args)


@pytest.mark.parametrize("kind", CODECS)
def test_the_common_header_of_every_kind_reads_without_its_codec(kind):
    encode, _ = CODECS[kind]
    data = encode(fingerprint=FP, sender=7, round=3, auth=signer(7))
    header = read_common_header(data)
    assert (header.kind, header.sender, header.round, header.run_id) == (kind, 7, 3, RUN)
    assert read_common_header(data[:COMMON.size]) == header  # nothing past the round is read
    with pytest.raises(CodecError, match="shorter than the"):
        read_common_header(data[:COMMON.size - 1])
    with pytest.raises(CodecError, match="bad magic"):
        read_common_header(b"XXXX" + data[4:])
    with pytest.raises(CodecError, match="unsupported .*version 9"):
        read_common_header(patched(data, "<B", 4, 9))
