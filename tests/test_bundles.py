"""Per-device bundles: each device gets its own account and key and nothing of anyone else's; bad ones are one line."""

from __future__ import annotations

import yaml

from edge_mcepl.cli import main
from edge_mcepl.comm.broker.bundles import bundle_path, load_bundle, write_bundles
from edge_mcepl.comm.broker.credentials import LabCredentials


def test_a_bundle_holds_only_its_devices_secrets(tmp_path):
    creds = LabCredentials.generate("t", 3)
    creds.broker_url = "mqtt://127.0.0.1:1883"
    write_bundles(tmp_path, creds, "-----BEGIN CERTIFICATE-----\n...\n")
    for agent in (0, 1, 2):
        path = bundle_path(tmp_path, agent)
        text = path.read_text()
        bundle = load_bundle(path)
        assert (bundle.role, bundle.agent_id, bundle.username) == ("agent", agent, f"agent-{agent}")
        assert bundle.password == creds.agents[agent] and bundle.signing_key == creds.signing_keys[agent]
        assert bundle.ca is not None and bundle.broker == creds.broker_url
        others = [creds.admin_password, creds.observer_password, creds.lab_key,
                  *(creds.agents[j] for j in range(3) if j != agent),
                  *(creds.signing_keys[j] for j in range(3) if j != agent)]
        assert not any(secret in text for secret in others)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    observer = load_bundle(bundle_path(tmp_path, None))
    assert observer.role == "observer" and observer.signing_key is None and observer.agent_id is None
    assert creds.admin_password not in bundle_path(tmp_path, None).read_text()


def test_join_refuses_a_missing_broken_or_observer_bundle_in_one_line(tmp_path, capsys):
    creds = LabCredentials.generate("t", 2)
    creds.broker_url = "mqtt://127.0.0.1:1"
    write_bundles(tmp_path, creds, None)
    broken = tmp_path / "broken.yaml"
    raw = yaml.safe_load(bundle_path(tmp_path, 1).read_text())
    broken.write_text(yaml.safe_dump({**raw, "signing_key": None}))
    cases = {tmp_path / "nope.yaml": "no such file",
             broken: "an agent bundle needs agent_id and signing_key",
             bundle_path(tmp_path, None): "an observer's bundle cannot join"}
    for path, expected in cases.items():
        assert main(["join", "--bundle", str(path), "--state-dir", str(tmp_path / "s")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], lines
