"""`edge-mcepl dashboard` given the wrong things: one line naming the culprit, exit status 2, no page served."""

from __future__ import annotations

import pytest

from edge_mcepl.cli import main
from edge_mcepl.comm.broker.bundles import write_bundles
from edge_mcepl.comm.broker.credentials import LabCredentials


@pytest.fixture
def bundles(tmp_path):
    creds = LabCredentials.generate("t", 2)
    creds.broker_url = "mqtt://127.0.0.1:1"  # nothing listens there
    return write_bundles(tmp_path, creds, None)


def fails(capsys, *argv: str) -> str:
    assert main(["dashboard", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("edge-mcepl: error: "), err
    return err


def test_it_needs_a_run_directory_or_an_observer_bundle(capsys, tmp_path, bundles):
    assert "not both" in fails(capsys)
    assert "not both" in fails(capsys, str(tmp_path), "--bundle", str(bundles / "observer.yaml"))
    assert "no such run directory" in fails(capsys, str(tmp_path / "missing"))
    assert "not a run directory" in fails(capsys, str(tmp_path), "--port", "0")


def test_an_agents_bundle_is_refused(capsys, bundles):
    err = fails(capsys, "--bundle", str(bundles / "agent-1.yaml"))
    assert "agent 1's bundle" in err and "observer.yaml" in err


def test_beyond_loopback_it_needs_tls_and_a_live_lab(capsys, tmp_path, bundles):
    observer = str(bundles / "observer.yaml")
    assert "needs --tls-cert and --tls-key" in fails(capsys, "--bundle", observer, "--host", "0.0.0.0")
    (tmp_path / "run").mkdir()
    err = fails(capsys, str(tmp_path / "run"), "--host", "0.0.0.0", "--tls-cert", "c.pem", "--tls-key", "k.pem")
    assert "loopback only" in err
    assert "go together" in fails(capsys, "--bundle", observer, "--tls-cert", "c.pem")


def test_an_unreachable_broker_is_one_line(capsys, bundles):
    err = fails(capsys, "--bundle", str(bundles / "observer.yaml"), "--port", "0", "--connect-timeout", "2")
    assert "127.0.0.1:1" in err
