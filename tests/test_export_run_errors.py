"""A bad run directory is a one-line error with exit 2, and nothing is written."""

from __future__ import annotations

import json

import pytest

from edge_mcepl.cli import main
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


@pytest.fixture
def run_dir(tmp_path):
    config = tiny_lab_config(**{"agents": 2, "rounds": 1, "algorithm.min_kept_per_filter": 1})
    Simulator(config, log=lambda message: None).run(tmp_path / "run", progress=False)
    return tmp_path / "run"


def export_error(args, capsys):
    capsys.readouterr()
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_weights_fingerprint_mismatch(run_dir, tmp_path, capsys):
    state_path = run_dir / "final" / "state.json"
    state = json.loads(state_path.read_text())
    state["fingerprint"] = "00" * 16
    state_path.write_text(json.dumps(state))
    line = export_error([str(run_dir), "--out", str(tmp_path / "out")], capsys)
    assert "fingerprint mismatch" in line and str(state_path) in line
    assert not (tmp_path / "out").exists()


def test_corrupt_mask_file(run_dir, tmp_path, capsys):
    mask = run_dir / "final" / "masks" / "agent_001.mcpl"
    data = bytearray(mask.read_bytes())
    data[len(data) // 2] ^= 0xFF
    mask.write_bytes(bytes(data))
    line = export_error([str(run_dir), "--agent", "1", "--out", str(tmp_path / "out")], capsys)
    assert str(mask) in line and "corrupt" in line
    assert not any((tmp_path / "out").glob("*/*")) if (tmp_path / "out").exists() else True


def test_not_a_run_directory(tmp_path, capsys):
    line = export_error([str(tmp_path / "nothing"), "--out", str(tmp_path / "out")], capsys)
    assert "state.json not found" in line
