"""What `export` and `profile show` print must not mislead (issue 11, item 5): accuracy says what data it was
measured on and is never measured on a synthetic stand-in, an export that removes nothing says why, an int8
change reads as a change, and the retention names the constraint that set it."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from edge_mcepl.cli import main
from edge_mcepl.profiles import policy_structure, profile_from_dict, resolve_profile_path
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Reference preset (no filter-drop rule); agents at r = 0.1 / 0.25 / 0.5 (measured: 14, 2 and 0 dead conv1
    filters, of which --align 8 removes 14, none and none)."""
    folder = tmp_path_factory.mktemp("messages") / "run"
    config = tiny_lab_config(**{"agents": 3, "rounds": 1, "retention.conv": [0.1, 0.25, 0.5]})
    Simulator(config, log=lambda message: None).run(folder, progress=False)
    return folder


def test_an_export_that_removes_nothing_says_why_and_accuracy_names_synthetic_data(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--out", str(tmp_path / "out"), "--no-dense"]) == 0
    lines = capsys.readouterr().out.splitlines()
    agents = [i for i, line in enumerate(lines) if line.startswith("  agent ")]
    assert len(agents) == 3
    for i in agents:
        assert "on synthetic data (the run's dataset)" in lines[i]
    assert lines[agents[0] + 1].strip().startswith("→")  # filters were removed: nothing to explain
    aligned, reference = lines[agents[1] + 1], lines[agents[2] + 1]
    assert "no filter removed" in aligned and "2 dead filter(s) kept" in aligned and "--align 1" in aligned
    assert "no filter removed" in reference and "no filter-drop rule" in reference
    assert "--preset structured" in reference and "min_kept_per_filter (small-cnn: 1" in reference
    manifests = [json.loads((tmp_path / "out" / f"agent_{i:03d}" / "manifest.json").read_text()) for i in range(3)]
    assert "why_none_removed" not in manifests[0]["filters"]
    assert manifests[2]["filters"]["why_none_removed"] in reference


def test_a_missing_dataset_is_not_replaced_by_synthetic_data(run_dir, tmp_path, capsys):
    # A config that allowed the synthetic fallback (the run itself found its MNIST): export used to
    # score the MNIST model on synthetic images and print that number as its accuracy.
    copy = shutil.copytree(run_dir, tmp_path / "run")
    raw = yaml.safe_load((copy / "config.yaml").read_text())
    raw["data"].update(dataset="mnist", data_dir=str(tmp_path / "mnist-not-here"), fallback_to_synthetic=True)
    (copy / "config.yaml").write_text(yaml.safe_dump(raw))
    assert main(["export", str(copy), "--agent", "0", "--out", str(tmp_path / "out"), "--no-dense"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "accuracy skipped (data not available: mnist not found" in line
    m = json.loads((tmp_path / "out" / "agent_000" / "manifest.json").read_text())
    assert "pruned_onnx" not in m["accuracy"] and "mnist-not-here" in m["accuracy"]["skipped"]


def test_the_structure_names_the_constraint_that_set_it():
    def detail(name: str, **edits) -> str:
        raw = yaml.safe_load(resolve_profile_path(name).read_text())
        for key, value in edits.items():
            section, field = key.split("__")
            raw[section][field] = value
        return policy_structure(profile_from_dict(raw), "alexnet-cifar").detail

    workstation = detail("gpu-workstation")  # both budgets allow every filter: full width, no cap
    assert "→ width 1 " in workstation and "full width" in workstation and "latency-bound" not in workstation
    assert "latency-bound" in detail("rpi4") and "13.1 M MACs ≤ budget 13.5 M" in detail("rpi4")
    assert "memory-bound" in detail("rpi4", budget__model_memory_mb=0.5, hardware__gflops=100.0)
    floor = detail("rpi4", hardware__gflops=0.01)
    assert "→ width 0.0625" in floor and "no width meets the budgets" in floor and "> budget" in floor
