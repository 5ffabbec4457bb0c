"""The lab secrets file: what `edge-mcepl broker` keeps on its host and reads back; defects are one line."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from edge_mcepl.comm.broker.credentials import LabCredentials
from edge_mcepl.errors import UserError


@pytest.fixture
def saved(tmp_path):
    creds = LabCredentials.generate("t", 3)
    creds.broker_url = "mqtt://127.0.0.1:1883"
    path = tmp_path / "lab-secrets.yaml"
    creds.save(path)
    return creds, path


def test_a_saved_file_loads_back_the_same_credentials(saved):
    creds, path = saved
    assert LabCredentials.load(path) == creds
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_unknown_keys_and_wrong_types_name_the_file_and_the_dotted_field(saved, tmp_path, capsys):
    _, path = saved
    raw = yaml.safe_load(path.read_text())
    entry = raw["agents"][1]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"agents": {**raw["agents"], 1: {**entry, "pasword": "x"}}}, "unknown key 'agents.1.pasword' (known: "),
        ({"admin": {**raw["admin"], "password": 1234}}, "admin.password: expected a string, got 1234"),
        ({"agents": {"one": entry}}, "agents.one: expected an int, got 'one'"),
        ({"agents": {2: entry}}, "agents.2.username: 'agent-1' is not the ACL's user 'agent-2'"),
        ({"agents": {1: {**entry, "signing_key": "short"}}}, "agents.1.signing_key: "),
        ({"admin": None}, "admin: expected a mapping, got None"),
        ({"lab": None}, "lab: expected a lab name of 1–64 letters"),
    ]
    for changed, expected in cases:
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({**raw, **changed}))
        with pytest.raises(UserError) as err:
            LabCredentials.load(bad)
        line = str(err.value)
        assert "\n" not in line and line.startswith(f"{bad}: ") and expected in line, line
    bad.write_text(yaml.safe_dump({k: v for k, v in raw.items() if k != "admin"}))
    with pytest.raises(UserError, match="missing key 'admin'"):
        LabCredentials.load(bad)
