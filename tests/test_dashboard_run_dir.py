"""A finished run on the dashboard: the same totals and final accuracy as the run's own files."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from edge_mcepl.dashboard.sources import RunDirSource, open_source
from edge_mcepl.errors import UserError
from edge_mcepl.metrics import read_metrics

from conftest import tiny_lab_config
from labsupport import simulate


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return simulate(tiny_lab_config(rounds=4, eval_every=2), tmp_path_factory.mktemp("run"))


def mean_shown(state: dict) -> tuple[float, int]:
    """What the page's "mean accuracy" shows: the newest evaluation round's mean over the agents evaluated then."""
    latest = max(d["eval_round"] for d in state["devices"].values())
    accs = [d["accuracy"] for d in state["devices"].values() if d["eval_round"] == latest]
    return sum(accs) / len(accs), latest


def test_the_view_of_a_finished_run_states_the_summary_accuracy_and_the_rows_totals(run_dir):
    source = open_source(str(run_dir), None)
    assert isinstance(source, RunDirSource)
    source.start()
    state = source.view.snapshot()
    summary = (run_dir / "summary.txt").read_text()
    stated = re.search(r"round (\d+): mean personalized accuracy (\d\.\d{4})", summary)
    mean, latest = mean_shown(state)
    assert (f"{mean:.4f}", latest) == (stated.group(2), int(stated.group(1)))
    per_agent = {int(line.split()[0]): line.split()[4] for line in summary.splitlines()[1:-1]}
    assert {int(i): f"{d['accuracy']:.4f}" for i, d in state["devices"].items()} == per_agent
    rows = read_metrics(run_dir / "metrics.jsonl")
    for i, device in state["devices"].items():
        mine = [r for r in rows if r["agent"] == int(i)]
        assert device["bytes_sent"] == sum(r["bytes_sent"] for r in mine) > 0
        assert (device["state"], device["round"]) == ("done", 4)
    assert len(state["points"]) == len(rows)
    assert sum("accuracy" in p for p in state["points"]) == sum("accuracy" in r for r in rows)
    assert state["topology"]["edges"] == [[0, 1], [0, 3], [1, 2], [2, 3]]  # the ring
    assert state["lab"]["mode"] == "run" and state["lab"]["model"] == "small-cnn"


def test_an_unfinished_lab_is_read_from_its_agents_own_rows(run_dir, tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    shutil.copy(run_dir / "config.yaml", lab)
    rows = read_metrics(run_dir / "metrics.jsonl")
    for agent in range(4):
        folder = lab / "agents" / f"agent_{agent:03d}"
        folder.mkdir(parents=True)
        mine = [r for r in rows if r["agent"] == agent and r["round"] <= 2]
        (folder / "metrics.jsonl").write_text("".join(f"{json.dumps(r)}\n" for r in mine) + '{"torn')
    source = RunDirSource(lab)
    source.start()
    state = source.view.snapshot()
    assert {(d["state"], d["round"]) for d in state["devices"].values()} == {("offline", 2)}
    assert "unfinished run" in state["events"][-1]["text"]


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    with pytest.raises(UserError, match="not a run directory"):
        RunDirSource(tmp_path).start()
    with pytest.raises(UserError, match="no such run directory"):
        open_source(str(tmp_path / "nope"), None)
    with pytest.raises(UserError, match="not both"):
        open_source(str(tmp_path), "observer.yaml")
