"""Checkpoints: a restored agent continues bit-identically; bad files are one-line errors, never unpickled."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from edge_mcepl.checkpoint import load_checkpoint, restore_agent, save_checkpoint
from edge_mcepl.errors import UserError
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def quiet(config):
    return Simulator(config, log=lambda _: None)


def masks(sim, rounds):
    return [a.encode_message(rounds) for a in sim.agents]


@pytest.mark.parametrize("width", [1.0, [0.5, 1.0, 0.25]])
def test_resuming_from_checkpoints_gives_the_uninterrupted_masks(tmp_path, width):
    config = tiny_lab_config(rounds=6, eval_every=100, **{"retention.width": width})
    reference = quiet(config)
    for t in range(6):
        reference.run_round(t)

    first = quiet(config)
    for t in range(3):
        first.run_round(t)
    for agent in first.agents:
        save_checkpoint(tmp_path / f"a{agent.agent_id}.npz", agent, 3, lab="t", run_id="r1")
    assert not list(tmp_path.glob("*.tmp")), "atomic write leaves no temporary file"

    resumed, unrestored = quiet(config), quiet(config)
    for agent in resumed.agents:
        ckpt = load_checkpoint(tmp_path / f"a{agent.agent_id}.npz")
        assert ckpt.next_round == 3
        restore_agent(agent, ckpt, lab="t", run_id="r1")
    for t in range(3, 6):
        resumed.run_round(t)
        unrestored.run_round(t)
    assert masks(resumed, 6) == masks(reference, 6)
    assert masks(unrestored, 6) != masks(reference, 6)  # the checkpoint carried real state


def test_checkpoint_for_another_agent_or_run_is_refused(tmp_path):
    config = tiny_lab_config()
    sim = quiet(config)
    sim.run_round(0)
    path = tmp_path / "c.npz"
    save_checkpoint(path, sim.agents[0], 1, lab="t", run_id="r1")
    with pytest.raises(UserError, match="written for agent_id 0, but this agent has 1"):
        restore_agent(sim.agents[1], load_checkpoint(path), lab="t", run_id="r1")
    with pytest.raises(UserError, match="written for run_id 'r1', but this agent has 'r2'"):
        restore_agent(sim.agents[0], load_checkpoint(path), lab="t", run_id="r2")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle", "missing"])
def test_damaged_checkpoints_are_one_line_errors(tmp_path, damage):
    config = tiny_lab_config()
    sim = quiet(config)
    path = tmp_path / "c.npz"
    save_checkpoint(path, sim.agents[0], 0, lab="t", run_id="r")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "pickle":  # an object array would need pickle to load: must be refused, not executed
        np.savez(path, meta=np.array([{"format": "edge-mcepl-checkpoint/1"}], dtype=object))
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k != "scores_0"}
        np.savez(path, **arrays)
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_checkpoint_metadata_refuses_unknown_keys_and_wrong_types_naming_the_field(tmp_path):
    sim = quiet(tiny_lab_config())
    path = tmp_path / "c.npz"
    save_checkpoint(path, sim.agents[0], 0, lab="t", run_id="r")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]))
    assert load_checkpoint(path).meta.model_dump(mode="json") == meta  # what save wrote is the model
    bad_shape = {**meta["rule_arrays"], "scores_0": [meta["rule_arrays"]["scores_0"][0], [3, "x"]]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"learning_rate": 1}, "unknown key 'learning_rate' (known: agent_id, batch_size, "),
        ({"next_round": "3"}, "next_round: expected an int, got '3'"),
        ({"rule_arrays": bad_shape}, "rule_arrays.scores_0[1][1]: expected an int, got 'x'"),
    ]
    for changed, expected in cases:
        text = json.dumps({**meta, **changed}).encode()
        np.savez(path, **{**arrays, "meta": np.frombuffer(text, dtype=np.uint8)})
        with pytest.raises(UserError) as err:
            load_checkpoint(path)
        line = str(err.value)
        assert "\n" not in line and line.startswith(f"{path}: ") and expected in line, line
        assert line.endswith("delete it (or pass --fresh) to start this agent over")
