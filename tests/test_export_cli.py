"""`edge-mcepl export` end to end on a tiny simulated run: verified, smaller models for every agent."""

from __future__ import annotations

import json

import numpy as np

from edge_mcepl.cli import main
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def test_export_all_agents_of_a_structured_run(tmp_path, capsys):
    # small-cnn's conv1 has 9 weights per filter: a filter-drop threshold ≥ 9 would kill all of it,
    # so the structured preset is used with small-cnn's threshold (see docs/export.md).
    config = tiny_lab_config(**{"agents": 3, "rounds": 4, "algorithm.preset": "structured",
                                "algorithm.min_kept_per_filter": 1, "retention.conv": [0.1, 0.3, 0.5]})
    run_dir = tmp_path / "run"
    Simulator(config, log=lambda message: None).run(run_dir, progress=False)
    out = tmp_path / "export"

    assert main(["export", str(run_dir), "--all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weights fingerprint" in printed and "verified" in printed

    assert sorted(p.name for p in out.iterdir()) == ["agent_000", "agent_001", "agent_002"]  # no temp folders left
    removed = 0
    for agent in range(3):
        folder = out / f"agent_{agent:03d}"
        assert {p.name for p in folder.iterdir()} == {"model.onnx", "dense.onnx", "manifest.json"}
        m = json.loads((folder / "manifest.json").read_text())
        assert m["agent"] == agent and m["verification"]["pruned"]["passed"]
        assert m["verification"]["pruned"]["inputs"] >= 256 and m["verification"]["pruned"]["max_abs_diff"] <= 1e-4
        removed += m["filters"]["removed"]
        if m["filters"]["removed"]:
            assert (folder / "model.onnx").stat().st_size < (folder / "dense.onnx").stat().st_size
            assert m["params"]["pruned"] < m["params"]["dense"] and m["macs"]["pruned"] < m["macs"]["dense"]
        # The run evaluated the same final mask: the exported model's accuracy is the run's.
        acc = m["accuracy"]
        assert abs(acc["pruned_onnx"] - acc["in_run"]) <= 1.0 / acc["test_images"]
    assert removed > 0, "the structured preset at retention 0.1 leaves dead filters to remove"

    # Re-exporting one agent replaces its folder; an unknown agent is a one-line error, exit 2.
    assert main(["export", str(run_dir), "--agent", "1", "--out", str(out), "--no-dense"]) == 0
    assert not (out / "agent_001" / "dense.onnx").exists()
    capsys.readouterr()
    assert main(["export", str(run_dir), "--agent", "7", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no agent 7" in err[0]

    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["infer", str(out / "agent_000" / "model.onnx"), str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "pred.npy")]) == 0
    assert np.load(tmp_path / "pred.npy").shape == (5,)
