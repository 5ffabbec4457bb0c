"""Ed25519 identities: each agent signs its own messages; every receiver checks them against the roster.

A lab's security rests on who can sign as whom, not on who can publish where: a device that holds
only its own bundle (docs/security.md#bundles) has only its own private key, so even with the broker's
credentials of another agent — or the broker itself — it cannot make a message another agent's
neighbours accept. :class:`MessageAuth` is one agent's view: the run its messages are bound to, its
signing key (none for an observer) and the roster of public keys. Ed25519 (RFC 8032) via
``cryptography``: deterministic signatures, 64 bytes, ~50 µs to sign and ~100 µs to verify here
(docs/codec.md has the measured cost next to encode/decode).

The simulator signs too, with keys derived from the lab seed (:func:`simulation_keys`: not secret,
it models a lab's bytes and CPU cost, not its security), so a simulated run and a device lab send
messages of the same sizes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .envelope import RUN_ID_SIZE, SignatureError

KEY_SIZE = 32  # an Ed25519 private seed or public key, raw


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_text(private_text: str, what: str) -> str:
    """The public half (base64) of a base64 private key: what the roster and bundles carry."""
    return encode_key(private_key(decode_key(private_text, what)).public_key().public_bytes_raw())


def encode_key(raw: bytes) -> str:
    """A raw key as text for a YAML bundle or the JSON roster (base64)."""
    return base64.b64encode(raw).decode()


def decode_key(text: str, what: str) -> bytes:
    """The raw 32 bytes of a base64 key, or a one-line ``ValueError`` naming ``what``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not base64") from None
    if len(raw) != KEY_SIZE:
        raise ValueError(f"{what}: {len(raw)} bytes, an Ed25519 key is {KEY_SIZE}")
    return raw


def private_key(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def run_id_bytes(run_id: str) -> bytes:
    """The lab config's run id (16 hex digits) as the 8 header bytes that bind a message to it."""
    raw = bytes.fromhex(run_id)
    if len(raw) != RUN_ID_SIZE:
        raise ValueError(f"run id {run_id!r}: need {2 * RUN_ID_SIZE} hex digits")
    return raw


def simulation_keys(seed: int, agents: int) -> dict[int, Ed25519PrivateKey]:
    """Per-agent keys derived from the lab seed: the simulator's (reproducible, deliberately not secret)."""
    return {i: private_key(hashlib.blake2b(f"edge-mcepl simulation key/{seed}/{i}".encode(),
                                           digest_size=KEY_SIZE).digest()) for i in range(agents)}


@dataclass(frozen=True)
class MessageAuth:
    """One agent's signing key (None: verify only) and the roster it verifies against, for one run."""

    run_id: bytes
    signer: Ed25519PrivateKey | None
    roster: Mapping[int, Ed25519PublicKey] = field(repr=False)

    @property
    def signs(self) -> bool:
        return self.signer is not None

    def sign(self, body: bytes) -> bytes:
        if self.signer is None:
            raise SignatureError("this identity has no signing key (an observer only verifies)")
        return self.signer.sign(body)

    def verify(self, sender: int, body: bytes, signature: bytes) -> None:
        key = self.roster.get(sender)
        if key is None:
            raise SignatureError(f"agent {sender} is not in the lab's roster")
        try:
            key.verify(signature, body)
        except InvalidSignature:
            raise SignatureError(f"signature does not verify as agent {sender}'s: forged or tampered") from None
