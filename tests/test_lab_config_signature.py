"""The lab config is believed only when the lab key signed it; forged, tampered, unsigned, partial: refused."""

from __future__ import annotations

import json

import pytest

from edge_mcepl.comm.broker.credentials import LabCredentials
from edge_mcepl.devicelab.envelope import LabSettings, make_envelope, parse_envelope
from edge_mcepl.errors import UserError

from conftest import tiny_lab_config
from labsupport import signed_envelope


def test_only_a_config_signed_by_the_labs_key_with_a_whole_roster_is_read(tmp_path):
    config = tiny_lab_config()
    envelope = make_envelope(config, [], LabSettings())
    creds = LabCredentials.generate("test", config.agents)
    payload, key = signed_envelope(envelope, config, creds=creds)
    assert parse_envelope(payload, "test", tmp_path / "ok", lab_public_key=key).message.run_id == envelope["run_id"]

    signed = json.loads(payload)
    tampered = json.dumps({**signed, "config": {**signed["config"], "rounds": 9999}}).encode()
    other_lab, _ = signed_envelope(envelope, config)  # a lab key of another enrolment
    unsigned = json.dumps({**signed, "signature": ""}).encode()
    for bad in (tampered, other_lab, unsigned, b"not json"):
        with pytest.raises(UserError, match="not signed by this lab's key") as err:
            parse_envelope(bad, "test", tmp_path / "bad", lab_public_key=key)
        assert "\n" not in str(err.value)

    # A roster of three agents for a lab of four (signed correctly): agent 3 could not be verified.
    payload, key = signed_envelope(envelope, tiny_lab_config(agents=3), creds=LabCredentials.generate("test", 3))
    with pytest.raises(UserError, match=r"roster names agents \[0, 1, 2\], the lab has 4"):
        parse_envelope(payload, "test", tmp_path / "partial", lab_public_key=key)
