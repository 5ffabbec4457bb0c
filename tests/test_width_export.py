"""A narrow agent exports to a physically smaller ONNX model, costing what the structure policy counted."""

from __future__ import annotations

import json

from edge_mcepl.cli import main
from edge_mcepl.export.cost import exported_cost

from conftest import tiny_lab_config
from labsupport import simulate


def test_a_half_width_agent_exports_within_the_policys_count_and_verifies_in_onnxruntime(tmp_path, capsys):
    run = simulate(tiny_lab_config(name="w", rounds=2, eval_every=2, **{"retention.width": [0.5, 1.0]}), tmp_path)
    assert main(["export", str(run), "--out", str(tmp_path / "out"), "--agent", "0"]) == 0
    capsys.readouterr()
    manifest = json.loads((tmp_path / "out" / "agent_000" / "manifest.json").read_text())
    planned = exported_cost("small-cnn", 0.5)
    assert manifest["retention"]["width"] == 0.5
    assert manifest["macs"]["pruned"] <= planned.macs and manifest["macs"]["dense"] == planned.dense_macs
    assert manifest["macs"]["ratio"] < 0.3  # ≈ width² for the inner layers
    assert manifest["verification"]["pruned"]["passed"] and manifest["verification"]["pruned"]["argmax_agreement"] == 1
