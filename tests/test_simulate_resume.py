"""`simulate` checkpoints every N rounds and `simulate --resume RUN_DIR` continues to the uninterrupted run.

A run stopped by Ctrl-C after round 5 (checkpoints every 2 rounds: the latest after round 4) is
resumed from the command line; its masks, metrics (timings aside) and summary must be those of
the same run never stopped — for MCE-PL with delta-coded masks, with score momentum and a cosine
schedule, and for dense weight training. A half-written checkpoint set is ignored.
"""

from __future__ import annotations

import pytest

from edge_mcepl.cli import main
from edge_mcepl.metrics import read_metrics
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config

TIMINGS = {"train_seconds", "round_seconds"}
ROUNDS = 7


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("setting", [
    {},
    {"algorithm.momentum": 0.9, "algorithm.lr_schedule": "cosine"},
    {"algorithm.name": "weight_training"},
    {"algorithm.neighbour_weighting": "overlap"},
], ids=["mcepl-delta", "momentum-cosine", "weight-training", "overlap-weighted"])
def test_a_run_resumed_after_ctrl_c_equals_the_uninterrupted_run(tmp_path, monkeypatch, capsys, setting):
    config = tiny_lab_config(rounds=ROUNDS, eval_every=3, **setting)
    whole = tmp_path / "whole"
    Simulator(config, log=lambda _: None).run(whole, progress=False, checkpoint_every=0)

    stopped = tmp_path / "stopped"
    sim = Simulator(config, log=lambda _: None)
    run_round = sim.run_round

    def ctrl_c_in_round_6(t):
        if t == 5:
            raise Interrupted
        return run_round(t)

    monkeypatch.setattr(sim, "run_round", ctrl_c_in_round_6)
    with pytest.raises(Interrupted):
        sim.run(stopped, progress=False, checkpoint_every=2)
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == ["round-000004"]
    assert len(read_metrics(stopped / "metrics.jsonl")) == 5 * config.agents  # round 5 ran after the checkpoint
    (stopped / "checkpoints" / ".partial-000006").mkdir()  # a set a crash left half-written

    assert main(["simulate", "--resume", str(stopped), "--no-progress", "--checkpoint-every", "2"]) == 0
    assert "resuming after round 4 of 7" in capsys.readouterr().out
    assert comparable(read_metrics(stopped / "metrics.jsonl")) == comparable(read_metrics(whole / "metrics.jsonl"))
    assert (stopped / "summary.txt").read_text() == (whole / "summary.txt").read_text()
    finals = sorted(p.relative_to(whole) for p in (whole / "final").rglob("*") if p.is_file())
    assert [(stopped / p).read_bytes() for p in finals] == [(whole / p).read_bytes() for p in finals]
    assert not (stopped / "checkpoints").exists()  # a finished run needs none


def test_resume_refuses_what_would_change_or_cannot_continue_the_run(tmp_path, capsys):
    config = tiny_lab_config(rounds=3)
    done = tmp_path / "done"
    Simulator(config, log=lambda _: None).run(done, progress=False)
    (tmp_path / "empty").mkdir()
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.yaml").write_text((done / "config.yaml").read_text())
    for args, expected in [
        (["--resume", str(done), "--rounds", "9"], "--resume: --rounds cannot be given; a resumed run continues "
                                                   "with its own config.yaml"),
        (["x.yaml", "--resume", str(done)], "--resume: config cannot be given"),
        (["--resume", str(done)], f"--resume {done}: the run is complete"),
        (["--resume", str(tmp_path / "empty")], "not a run directory (no config.yaml)"),
        (["--resume", str(started)], f"--resume {started}: no checkpoints/ to resume from"),
        ([], "give a lab config YAML (or --resume RUN_DIR)"),
        ([str(done / "config.yaml"), "--out", str(tmp_path / "new"), "--checkpoint-every", "-1"],
         "--checkpoint-every -1: must be ≥ 0 (0: never)"),
    ]:
        assert main(["simulate", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (args, err)
