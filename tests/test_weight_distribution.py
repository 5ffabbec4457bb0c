"""Signed-constant fixed weights (docs/algorithm.md#fixed-weight-distribution): ±σ of the uniform, same signs.

The distribution is part of the weights' identity: it changes the fingerprint (the paper's uniform
keeps its old one), a run records it, and export regenerates the same weights from the record.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from edge_mcepl.cli import main
from edge_mcepl.config import config_from_dict
from edge_mcepl.errors import UserError
from edge_mcepl.nn.weights import generate_fixed_weights
from edge_mcepl.nn.zoo import build_model
from edge_mcepl.run_dir import read_state

from conftest import tiny_lab_config
from labsupport import simulate


def both(model_name="alexnet-cifar", seed=1234):
    model = build_model(model_name)
    return model, generate_fixed_weights(model, model_name, seed), generate_fixed_weights(
        model, model_name, seed, "signed-constant")


def test_signed_constants_take_the_uniforms_sign_and_standard_deviation():
    model, uniform, signed = both()
    for name, layer in model.masked_layers():
        u, s = uniform.tensors[f"{name}.weight"], signed.tensors[f"{name}.weight"]
        sigma = layer.init_bound / math.sqrt(3)
        assert set(s.abs().unique().tolist()) == pytest.approx([sigma]), name
        assert torch.equal(s > 0, u >= 0), name
        if f"{name}.bias" in uniform.tensors:
            assert torch.equal(uniform.tensors[f"{name}.bias"], signed.tensors[f"{name}.bias"])


def test_the_distribution_is_in_the_fingerprint_and_uniform_keeps_the_old_one():
    _, uniform, signed = both()
    assert uniform.fingerprint_hex == "a1e61c09480a7fb6d3fc7ff2542e27e3"  # every archived paper run's weights
    assert signed.fingerprint != uniform.fingerprint


def test_an_unknown_distribution_is_refused_naming_the_field():
    with pytest.raises(UserError, match="weights"):
        config_from_dict({"weights": "gaussian"})


def test_a_signed_constant_run_records_its_weights_and_exports_them(tmp_path, capsys):
    run = simulate(tiny_lab_config(name="sc", rounds=2, weights="signed-constant"), tmp_path)
    state = read_state(run)
    model = build_model("small-cnn")
    assert state.weights == "signed-constant"
    assert state.fingerprint == generate_fixed_weights(model, "small-cnn", 5, "signed-constant").fingerprint_hex
    assert main(["export", str(run), "--out", str(tmp_path / "out"), "--agent", "1"]) == 0
    capsys.readouterr()
    manifest = json.loads((tmp_path / "out" / "agent_001" / "manifest.json").read_text())
    assert manifest["model"]["weights"] == "signed-constant"
    assert manifest["verification"]["pruned"]["passed"]
