"""A metrics row's ``train_seconds`` is that agent's own local work; ``round_seconds`` is the lab's round."""

from __future__ import annotations

import json

from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def test_train_seconds_is_per_agent_and_the_round_contains_them_all(tmp_path):
    config = tiny_lab_config(**{"rounds": 2})
    Simulator(config, log=lambda _: None).run(tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for t in (1, 2):
        this_round = [r for r in rows if r["round"] == t]
        assert len(this_round) == config.agents
        assert len({r["round_seconds"] for r in this_round}) == 1, "one synchronous round for the whole lab"
        assert all(r["train_seconds"] > 0 for r in this_round)
        # Before the fix every row carried the whole round: their sum was agents × the round.
        assert sum(r["train_seconds"] for r in this_round) <= this_round[0]["round_seconds"]
