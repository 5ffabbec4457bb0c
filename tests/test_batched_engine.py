"""`simulate --batched`: every agent's local step in one pass gives the per-agent loop's run within float tolerance.

Round by round the two engines' losses must agree to 1e-5 and every agent must send the same
mask (its digest), for MCE-PL as configured by default, with score momentum and two augmented
local steps, and on a Dirichlet partition whose agents' batches differ in size at epoch ends.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from edge_mcepl.cli import main
from edge_mcepl.errors import UserError
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("setting", [
    {},
    {"algorithm.momentum": 0.9, "algorithm.local_steps": 2, "algorithm.augment": "crop-flip"},
    {"data.partition": "dirichlet", "data.dirichlet_alpha": 0.5, "algorithm.batch_size": 5},
], ids=["reference", "momentum-2-augmented-steps", "dirichlet-uneven-batches"])
def test_the_batched_engine_learns_the_loops_masks(setting, device):
    config = tiny_lab_config(rounds=6, agents=5, device=device, **setting)
    loop, batched = Simulator(config, log=lambda _: None), Simulator(config, log=lambda _: None, batched=True)
    sizes = {len(a.train_data) % config.algorithm.batch_size for a in loop.agents}
    if "data.partition" in setting:
        assert len(sizes) > 1  # the short last batches differ: several groups in one step
    for t in range(config.rounds):
        rows, batched_rows = loop.run_round(t), batched.run_round(t)
        for a, b in zip(rows, batched_rows):
            assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
            assert a["sent_digest"] == b["sent_digest"], (t, a["agent"])
    for a, b in zip(loop.agents, batched.agents):
        for x, y in zip(a.rule.layers, b.rule.layers):
            torch.testing.assert_close(x.scores, y.scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("setting", "message"), [
    ({"algorithm.name": "weight_training"}, "--batched: algorithm 'weight_training' has no batched step"),
    ({"retention.width": [1.0, 0.5]}, "--batched: the agents have widths [0.5, 1.0]"),
])
def test_what_has_no_batched_step_is_refused(setting, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Simulator(tiny_lab_config(**setting), log=lambda _: None, batched=True)


def test_batched_is_for_the_in_process_simulator_only(tmp_path, capsys):
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(tiny_lab_config().to_dict()))
    assert main(["simulate", str(path), "--out", str(tmp_path / "run"), "--batched", "--backend", "ray"]) == 2
    assert "--batched: the in-process simulator only (--backend local)" in capsys.readouterr().err
