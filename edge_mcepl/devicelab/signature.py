"""The lab config's signature and its verified reading, without torch: what a device and an observer share.

The lab key signs the canonical JSON of every field of the envelope but ``signature``
(docs/wire-format.md, "Lab config"). Anyone holding the lab public key — a device's bundle, the
observer's — checks it with :func:`verify_envelope` *before* believing anything in the message, and
:func:`read_lab_message` adds the validation every reader needs (the shape, the lab's name, a
roster naming exactly the lab's agents). This module stays torch-free so the dashboard can use it
on a laptop that only watches a lab; :mod:`.envelope` makes envelopes (which needs the weights).
"""

from __future__ import annotations

import base64
import binascii
import json

from ..comm.topics import config_topic
from ..errors import UserError
from ..validation import validate_json
from .schema import LabMessage, RosterEntry


def canonical_json(envelope: dict) -> bytes:
    """The bytes the lab key signs: every field but the signature, keys sorted, no spaces."""
    body = {k: v for k, v in envelope.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_envelope(envelope: dict, roster: dict[int, RosterEntry], lab_key: str) -> dict:
    """``envelope`` with the roster and the lab key's signature (a new dict, ready to publish)."""
    from ..wire.signing import decode_key, encode_key, private_key

    signed = {**envelope, "roster": {str(i): e.model_dump(mode="json") for i, e in sorted(roster.items())}}
    signed["signature"] = encode_key(private_key(decode_key(lab_key, "lab key")).sign(canonical_json(signed)))
    return signed


def verify_envelope(payload: bytes, lab_public_key: str, source: str) -> None:
    """The lab key's signature over the message, checked before anything in it is believed."""
    from cryptography.exceptions import InvalidSignature

    from ..wire.signing import decode_key, public_key

    try:
        raw = json.loads(payload)
        signature = base64.b64decode(raw["signature"], validate=True)
        public_key(decode_key(lab_public_key, "the bundle's lab_public_key")).verify(signature, canonical_json(raw))
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, InvalidSignature):
        raise UserError(f"{source}: not signed by this lab's key (forged, or your bundle is another lab's) — "
                        "refusing it") from None


def read_lab_message(payload: bytes, lab: str, lab_public_key: str) -> LabMessage:
    """The retained config message of ``lab``: signature verified first, then validated (one-line errors)."""
    source = f"lab config on {config_topic(lab)}"
    verify_envelope(payload, lab_public_key, source)
    message = validate_json(LabMessage, payload, source)
    if message.lab != lab:
        raise UserError(f"{source}: is for lab {message.lab!r}")
    agents = message.config.get("agents")
    if not isinstance(agents, int) or sorted(message.roster) != list(range(agents)):
        raise UserError(f"{source}: its roster names agents {sorted(message.roster)}, the lab has {agents}")
    return message
