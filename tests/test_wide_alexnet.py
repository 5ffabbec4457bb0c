"""The wider random networks of issue 15's over-parameterisation ablation: AlexNet-CIFAR ×2 and ×4.

Every hidden layer (conv filters, fc1 units) is the multiple; input and classes are the paper's.
A wide model is a model like any other: it trains masks and exports to a verified ONNX file.
"""

from __future__ import annotations

import json

import pytest
import torch

from edge_mcepl.cli import main
from edge_mcepl.nn.zoo import build_model

from conftest import tiny_lab_config
from labsupport import simulate


@pytest.mark.parametrize("multiplier", [2, 4])
def test_every_hidden_layer_is_the_multiple(multiplier):
    m = multiplier
    model = build_model(f"alexnet-cifar-x{m}")
    assert model.layer_shapes() == [(64 * m, 3, 5, 5), (128 * m, 64 * m, 5, 5), (256 * m, 128 * m, 5, 5),
                                    (192 * m, 1024 * m), (10, 192 * m)]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_a_wide_model_trains_and_exports(tmp_path, capsys):
    config = tiny_lab_config(name="wide", model="alexnet-cifar-x2", agents=2, rounds=1, eval_every=1,
                             **{"data.synthetic_train_per_class": 4, "data.synthetic_test_per_class": 2})
    run = simulate(config, tmp_path)
    assert main(["export", str(run), "--out", str(tmp_path / "out"), "--agent", "0"]) == 0
    capsys.readouterr()
    manifest = json.loads((tmp_path / "out" / "agent_000" / "manifest.json").read_text())
    assert manifest["model"]["name"] == "alexnet-cifar-x2"
    assert manifest["verification"]["pruned"]["passed"]
