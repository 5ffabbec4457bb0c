"""Signing identities for tests: a small roster of fixed keys, one run id, and the two sides of a lab."""

from __future__ import annotations

from edge_mcepl.wire.signing import MessageAuth, simulation_keys

KEYS = simulation_keys(seed=7, agents=8)
ROSTER = {i: key.public_key() for i, key in KEYS.items()}
RUN = bytes(range(8))
OTHER_RUN = bytes(range(8, 16))


def signer(agent: int, run: bytes = RUN) -> MessageAuth:
    """Agent ``agent``'s identity: signs as it, verifies the roster."""
    return MessageAuth(run, KEYS[agent], ROSTER)


def receiver(run: bytes = RUN) -> MessageAuth:
    """A lab member that only verifies (what decoding needs)."""
    return MessageAuth(run, None, ROSTER)
