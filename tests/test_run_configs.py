"""benchmarks/run_configs.py: configs run as simulate processes into out-root/<stem>, finished ones reused."""

from __future__ import annotations

import subprocess
import sys

import yaml

from benchmarks.run_configs import ROOT

from conftest import tiny_lab_config

SCRIPT = ROOT / "benchmarks" / "run_configs.py"


def test_each_config_runs_into_its_own_folder_and_a_finished_one_is_reused(tmp_path):
    configs = []
    for name, seed in (("a", 1), ("b", 2)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tiny_lab_config(rounds=2, seed=seed).to_dict()))
        configs.append(str(path))
    command = [sys.executable, str(SCRIPT), *configs, "--jobs", "2", "--out-root", str(tmp_path / "runs")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(first.stdout.split()) == sorted(["a:", "done", "b:", "done"])
    for name in ("a", "b"):
        assert (tmp_path / "runs" / name / "summary.txt").exists()
        assert "2 rounds" in (tmp_path / "runs" / f"{name}.log").read_text()
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.split() == ["a:", "reused", "b:", "reused"]


def test_a_missing_config_or_a_failing_run_is_one_line(tmp_path):
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nope.yaml")], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "no such config" in missing.stderr and "Traceback" not in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: -3\n")
    failed = subprocess.run([sys.executable, str(SCRIPT), str(bad), "--out-root", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "bad failed (exit" in failed.stderr and "bad.log" in failed.stderr
    assert "agents" in (tmp_path / "runs" / "bad.log").read_text()
