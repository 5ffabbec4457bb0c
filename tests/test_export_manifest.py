"""manifest.json: the fields a device operator needs, with and without the agent's data, and int8."""

from __future__ import annotations

import json

import yaml

from edge_mcepl.cli import main
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def make_run(tmp_path):
    config = tiny_lab_config(**{"agents": 2, "rounds": 2, "retention.conv": 0.1, "algorithm.preset": "structured",
                                "algorithm.min_kept_per_filter": 1})
    Simulator(config, log=lambda message: None).run(tmp_path / "run", progress=False)
    return tmp_path / "run"


def test_manifest_fields_with_data_and_int8(tmp_path, capsys):
    run_dir = make_run(tmp_path)
    state = json.loads((run_dir / "final" / "state.json").read_text())
    assert main(["export", str(run_dir), "--agent", "1", "--out", str(tmp_path / "out"), "--quantize", "int8"]) == 0
    folder = tmp_path / "out" / "agent_001"
    m = json.loads((folder / "manifest.json").read_text())

    assert m["format"] == "edge-mcepl-export/1" and m["agent"] == 1 and "profile" in m
    assert m["channel_alignment"] == 8
    assert m["model"]["name"] == "small-cnn" and m["model"]["weights_fingerprint"] == state["fingerprint"]
    assert m["model"]["elu_logits"] is True and m["model"]["input_shape"] == [1, 28, 28]
    assert m["retention"]["conv"] == 0.1 and m["retention"]["linear"] == 0.9 and 0 < m["retention"]["mask_density"] < 1
    assert [layer["name"] for layer in m["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    for layer in m["layers"]:
        assert 0 < layer["filters_kept"] <= layer["filters"] and 0 < layer["params_kept"] <= layer["params"]
        assert len(layer["removed_filters"]) == layer["filters"] - layer["filters_kept"]
    assert m["layers"][0]["filters_kept"] < 32  # conv1 keeps 29 of 288 weights: at least 3 filters are dead
    assert m["params"]["pruned"] == sum(layer["params_kept"] for layer in m["layers"]) < m["params"]["dense"]
    assert m["flops"]["pruned"] == 2 * m["macs"]["pruned"] < m["flops"]["dense"] == 2 * m["macs"]["dense"]
    assert m["files"]["model"]["bytes"] == (folder / "model.onnx").stat().st_size < m["files"]["dense"]["bytes"]
    assert set(m["versions"]) >= {"edge-mcepl", "torch", "onnx", "onnxruntime", "numpy", "python"}
    assert m["accuracy"]["test_images"] > 0 and 0 <= m["accuracy"]["pruned_onnx"] <= 1
    assert "synthetic" in m["accuracy"]["data"]

    q = m["quantization"]
    assert m["files"]["int8"]["bytes"] == (folder / "model.int8.onnx").stat().st_size < m["files"]["model"]["bytes"]
    assert "agent's train images" in q["calibration"]
    assert q["accuracy"]["change"] == q["accuracy"]["int8"] - q["accuracy"]["fp32"]
    # Printed as an accuracy and its change in points, never a signed number that reads as an accuracy.
    points = f"{100 * q['accuracy']['change']:+.2f}".replace("-", "\u2212")
    printed, int8_kb = capsys.readouterr().out, m["files"]["int8"]["bytes"] / 1e3
    assert f"int8 {int8_kb:.0f} kB, accuracy {q['accuracy']['int8']:.4f} ({points} points vs fp32)" in printed
    for batch in ("batch_1", "batch_64"):
        assert q["latency"][batch]["fp32"]["p50_ms"] > 0 and q["latency"][batch]["int8"]["p50_ms"] > 0
    assert 0 <= q["vs_fp32"]["argmax_agreement"] <= 1


def test_missing_data_skips_accuracy_with_the_reason(tmp_path, capsys):
    run_dir = make_run(tmp_path)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"].update(dataset="mnist", data_dir=str(tmp_path / "no-data-here"))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["export", str(run_dir), "--agent", "0", "--out", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "agent_000" / "manifest.json").read_text())
    assert "pruned_onnx" not in m["accuracy"]
    assert "mnist not found" in m["accuracy"]["skipped"] and "no-data-here" in m["accuracy"]["skipped"]
    assert m["verification"]["pruned"]["passed"]  # verification never needs the data
