"""Each agent's validation split: carved from its own training shard, seeded, never trained on, reported in rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_mcepl.config import config_from_dict
from edge_mcepl.data.partitions import AgentPartition, carve_validation, classes_partition
from edge_mcepl.errors import UserError
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def parts(agents: int = 4) -> list[AgentPartition]:
    labels = np.repeat(np.arange(10), 50)
    return classes_partition(labels, labels, agents, 3, seed=1)


def test_the_split_is_disjoint_complete_and_of_the_stated_size():
    original = parts()
    carved = carve_validation(original, 0.2, seed=3)
    for before, after in zip(original, carved):
        n = before.train_indices.size
        assert after.validation_indices.size == round(0.2 * n)
        assert not np.intersect1d(after.train_indices, after.validation_indices).size
        assert np.array_equal(np.sort(np.concatenate([after.train_indices, after.validation_indices])),
                              before.train_indices)
        assert np.array_equal(after.test_indices, before.test_indices) and after.classes == before.classes


def test_it_is_seeded_per_agent_and_the_same_in_every_process():
    a, b = carve_validation(parts(), 0.2, seed=3), carve_validation(parts(), 0.2, seed=3)
    assert all(np.array_equal(x.validation_indices, y.validation_indices) for x, y in zip(a, b))
    other = carve_validation(parts(), 0.2, seed=4)
    assert any(not np.array_equal(x.validation_indices, y.validation_indices) for x, y in zip(a, other))


def test_no_fraction_no_split_and_a_tiny_shard_keeps_one_image_to_train_on():
    original = parts()
    assert carve_validation(original, 0.0, seed=3) == original
    two = AgentPartition(np.array([5, 9]), np.array([0]), (1,))
    (carved,) = carve_validation([two], 0.5, seed=0)
    assert carved.train_indices.size == 1 and carved.validation_indices.size == 1


def test_rows_report_validation_accuracy_and_agents_train_on_the_rest(tmp_path):
    config = tiny_lab_config(rounds=2, eval_every=2, **{"data.validation_fraction": 0.25})
    sim = Simulator(config, log=lambda _: None)
    for agent, part in zip(sim.agents, sim.data.partitions):
        assert len(agent.train_data) == part.train_indices.size
        assert len(agent.validation_data) == part.validation_indices.size > 0
        assert set(agent.validation_data.labels.tolist()) <= set(part.classes)  # its own classes
    sim.run(tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "accuracy" in r]
    assert evaluated and all(0 <= r["val_accuracy"] <= 1 and r["val_loss"] > 0 for r in evaluated)
    assert not any("val_accuracy" in r for r in rows if "accuracy" not in r)


def test_without_a_split_rows_have_no_validation_fields(tmp_path):
    Simulator(tiny_lab_config(rounds=2, eval_every=2), log=lambda _: None).run(tmp_path / "run", progress=False)
    assert "val_accuracy" not in (tmp_path / "run" / "metrics.jsonl").read_text()


def test_more_than_half_is_refused_in_one_line():
    with pytest.raises(UserError, match="validation_fraction"):
        config_from_dict({"data": {"validation_fraction": 0.6}})
