"""Several agents in one join process (`join --agent-id`, `lab --agents-per-process`): still the simulator's masks.

A process hosting agents 0-2 of a ring shares one copy of the data and the fixed weights, keeps
one MQTT connection and one state folder per agent, and runs its agents' rounds in lockstep; its
agents and those of the other process must learn exactly what the simulator's do. A mistaken
agent list or bundle is a one-line error before anything connects.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edge_mcepl.cli import main
from edge_mcepl.comm.broker.bundles import write_bundles
from edge_mcepl.comm.broker.credentials import LabCredentials
from edge_mcepl.devicelab.options import describe_ids, parse_agent_ids
from edge_mcepl.errors import UserError
from edge_mcepl.metrics import read_metrics
from edge_mcepl.profiles import load_profile, policy_structure
from edge_mcepl.run_dir import agent_dir

from conftest import tiny_lab_config
from labsupport import comparable, masks_of, needs_mosquitto, profile_file, simulate, tiny_raw, write_yaml


@needs_mosquitto
def test_a_lab_of_two_processes_hosting_five_mixed_width_agents_matches_the_simulator(tmp_path, capsys):
    lab_yaml = write_yaml(tmp_path / "lab.yaml", tiny_raw(name="group", agents=5, rounds=4, eval_every=2))
    slow = profile_file(tmp_path, "slow", "auto", gflops=0.5)
    width = policy_structure(load_profile(slow), "small-cnn").width
    out = tmp_path / "run"
    profiles = f"{profile_file(tmp_path, 'small', 0.2)},{slow}"
    code = main(["lab", str(lab_yaml), "--out", str(out), "--profiles", profiles, "--broker-kind", "mosquitto",
                 "--round-deadline", "120", "--agents-per-process", "3"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "started 2 join processes, up to 3 agents each" in printed
    # each process logs in its first agent's folder; the others' folders hold only their state
    first, second = (agent_dir(out, i) / "join.log" for i in (0, 3))
    assert "agents 0-2: joining lab 'group'" in first.read_text()
    assert "agents 3-4: joining lab 'group'" in second.read_text()
    assert not (agent_dir(out, 1) / "join.log").exists()
    sim_dir = simulate(tiny_lab_config(name="group", agents=5, rounds=4, eval_every=2,
                                       **{"retention.conv": [0.2, 0.3], "retention.width": [1.0, width]}), tmp_path)
    state, lab_masks = masks_of(out)
    assert lab_masks == masks_of(sim_dir)[1] and len(lab_masks) == 5
    assert [a["width"] for a in state["agents"]] == [1.0, width, 1.0, width, 1.0]
    assert [a["profile"] for a in state["agents"]] == ["small", "slow", "small", "slow", "small"]
    lab_rows = read_metrics(out / "metrics.jsonl")
    assert comparable(lab_rows) == comparable(read_metrics(sim_dir / "metrics.jsonl"))
    assert all(r["neighbours_heard"] == 2 and r["rejected"] == 0 for r in lab_rows)
    assert json.loads((out / "lab.json").read_text())["exit_codes"] == {str(i): 0 for i in range(5)}


def test_agent_lists_parse_in_order_and_describe_compactly():
    assert parse_agent_ids("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_agent_ids("4") == [4]
    assert describe_ids([0, 1, 2, 7, 9, 10]) == "agents 0-2,7,9-10"
    assert describe_ids([3]) == "agent 3"
    for bad, why in [("3-1", "runs backwards"), ("0-2,2", "listed twice"), ("a", "expected ids and ranges"),
                     ("1,", "expected ids and ranges"), ("-1", "expected ids and ranges")]:
        with pytest.raises(UserError, match=why):
            parse_agent_ids(bad)


@pytest.fixture
def bundles(tmp_path) -> Path:
    creds = dataclasses.replace(LabCredentials.generate("grp", 4), broker_url="mqtt://127.0.0.1:1")
    return write_bundles(tmp_path, creds, None)


@pytest.mark.parametrize("args, expected", [
    (["--bundle", "{dir}"], "--bundle {dir} is a folder: say which of its agents this process runs with --agent-id"),
    (["--bundle", "{dir}/agent-0.yaml", "--agent-id", "0-1"], "--agent-id needs --bundle to be a folder of bundles"),
    (["--bundle", "{dir}", "--agent-id", "2-5"], "--bundle {dir}/agent-4.yaml: no such file"),
    (["--bundle", "{dir}", "--agent-id", "1-0"], "--agent-id '1-0': range 1-0 runs backwards"),
    (["--bundle", "{dir}", "--agent-id", "observer"], "--agent-id 'observer': expected ids and ranges"),
])
def test_a_mistaken_agent_list_or_bundle_is_a_one_line_error(bundles, capsys, args, expected):
    assert main(["join", *(a.format(dir=bundles) for a in args)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected.format(dir=bundles) in err[0], err


def test_a_bundle_renamed_to_another_agents_name_is_refused(bundles, capsys):
    (bundles / "agent-1.yaml").replace(bundles / "agent-9.yaml")
    (bundles / "agent-3.yaml").rename(bundles / "agent-1.yaml")
    assert main(["join", "--bundle", str(bundles), "--agent-id", "0-1"]) == 2
    assert f"--bundle {bundles}/agent-1.yaml: holds agent 3's bundle" in capsys.readouterr().err


def test_lab_refuses_fewer_than_one_agent_per_process(tmp_path, capsys):
    lab_yaml = write_yaml(tmp_path / "lab.yaml", tiny_raw())
    assert main(["lab", str(lab_yaml), "--agents-per-process", "0"]) == 2
    assert "--agents-per-process 0: must be at least 1" in capsys.readouterr().err
