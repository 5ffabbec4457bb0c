"""One registry of learning rules: every name builds, runs, checkpoints and says whether it learns masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_mcepl.algorithms.base import LearningRule
from edge_mcepl.algorithms.registry import RULE_NAMES, rule_class
from edge_mcepl.config import ALGORITHMS
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config

MASK_RULES = {"mcepl", "local_only", "mask_averaging", "learned_filters"}


def test_the_config_accepts_exactly_the_registered_rules():
    assert set(ALGORITHMS) == set(RULE_NAMES)
    for name in RULE_NAMES:
        assert issubclass(rule_class(name), LearningRule)
    assert {name for name in RULE_NAMES if rule_class(name).learns_masks} == MASK_RULES


@pytest.mark.parametrize("name", RULE_NAMES)
def test_rule_state_round_trips_and_a_restored_rule_continues_identically(name):
    config = tiny_lab_config(**{"algorithm.name": name, "rounds": 4})
    a, b = Simulator(config, log=lambda _: None), Simulator(config, log=lambda _: None)
    for t in range(2):
        a.run_round(t)
        b.run_round(t)
    # Scramble b's rules, then restore them from a's state (the samplers are in step already):
    # both labs must go on in lockstep.
    for agent_a, agent_b in zip(a.agents, b.agents):
        state = agent_a.rule.state_dict()
        assert state, f"{name}: a rule must have state to checkpoint"
        agent_b.rule.load_state_dict({k: np.zeros_like(v) for k, v in state.items()})
        agent_b.rule.load_state_dict(state)
    rows_a, rows_b = a.run_round(2), b.run_round(2)
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    for agent_a, agent_b in zip(a.agents, b.agents):
        assert all(torch.equal(x, y) for x, y in zip(agent_a.rule.masks(), agent_b.rule.masks()))


def test_a_state_of_another_rule_is_refused():
    mcepl = Simulator(tiny_lab_config(), log=lambda _: None).agents[0].rule
    dsgd = Simulator(tiny_lab_config(**{"algorithm.name": "dsgd"}), log=lambda _: None).agents[0].rule
    with pytest.raises(ValueError, match="missing"):
        mcepl.load_state_dict(dsgd.state_dict())
    state = mcepl.state_dict()
    state["scores_0"] = state["scores_0"].astype(np.float64)
    with pytest.raises(ValueError, match="scores_0"):
        mcepl.load_state_dict(state)


@pytest.mark.parametrize("name", ["local_only", "mask_averaging", "dsgd"])
def test_mask_learning_rules_write_masks_for_export_and_others_do_not(tmp_path, name):
    Simulator(tiny_lab_config(**{"algorithm.name": name, "rounds": 1}), log=lambda _: None).run(tmp_path,
                                                                                                  progress=False)
    assert (tmp_path / "final" / "state.json").is_file() == (name in MASK_RULES)
