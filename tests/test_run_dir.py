"""The run directory: the device lab's merge writes what the simulator writes; reading names the bad file and field."""

from __future__ import annotations

import json
import os

import pytest

from conftest import tiny_lab_config
from edge_mcepl.atomic import atomic_file, atomic_write
from edge_mcepl.errors import UserError
from edge_mcepl.simulator import Simulator
from edge_mcepl.metrics import read_metrics, to_jsonl
from edge_mcepl.run_dir import (AgentRecord, RunIdentity, agent_dir, merge_lab_run, read_agent_result, read_state,
                                write_agent_result)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    config = tiny_lab_config(rounds=2, eval_every=2)
    run = tmp_path_factory.mktemp("sim") / "run"
    Simulator(config, log=lambda _: None).run(run, progress=False)
    return config, run


def one_line_error(call) -> str:
    with pytest.raises(UserError) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_merging_device_folders_gives_the_simulators_run_directory(simulated, tmp_path):
    config, sim = simulated
    state = read_state(sim)
    identity = RunIdentity(*(state[k] for k in ("model", "num_classes", "weights_seed", "fingerprint", "rounds")))
    rows = read_metrics(sim / "metrics.jsonl")
    lab = tmp_path / "lab"
    for entry in state["agents"]:
        folder = agent_dir(lab, entry["id"])
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text(to_jsonl([r for r in rows if r["agent"] == entry["id"]]) + '{"torn')
        record = AgentRecord(entry["id"], entry["retention_conv"], entry["retention_linear"], entry["neighbours"],
                             entry["classes"])
        write_agent_result(folder, identity, record, (sim / "final" / entry["mask_file"]).read_bytes(),
                           lab="t", run_id="r", profile="rpi4", notes=[])
    merge_lab_run(lab, config)
    merged = read_state(lab)
    assert [{k: v for k, v in a.items() if k != "profile"} for a in merged["agents"]] == state["agents"]
    assert {a["profile"] for a in merged["agents"]} == {"rpi4"}
    assert {k: v for k, v in merged.items() if k != "agents"} == {k: v for k, v in state.items() if k != "agents"}
    for entry in state["agents"]:
        assert (lab / "final" / entry["mask_file"]).read_bytes() == (sim / "final" / entry["mask_file"]).read_bytes()
    assert read_metrics(lab / "metrics.jsonl") == rows  # the torn last lines were skipped
    for name in ("config.yaml", "summary.txt"):
        assert (lab / name).read_text() == (sim / name).read_text()


def test_a_bad_state_file_names_the_file_and_the_field(simulated, tmp_path):
    _, sim = simulated
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    state = json.loads((sim / "final" / "state.json").read_text())
    path = run / "final" / "state.json"
    for field, value, expected in [("num_classes", "ten", "field 'num_classes' is 'ten', expected int"),
                                   ("agents", [{"id": 0}], "missing field 'agents[0].mask_file'"),
                                   ("agents", [{"id": True, "mask_file": "m"}], "field 'agents[0].id' is True"),
                                   ("fingerprint", "zz", "fingerprint 'zz' is not hex")]:
        path.write_text(json.dumps(dict(state, **{field: value})))
        line = one_line_error(lambda: read_state(run))
        assert str(path) in line and expected in line, line


def test_a_bad_agent_result_names_the_file_and_the_field(tmp_path):
    identity = RunIdentity("small-cnn", 10, 5, "00" * 16, 3)
    write_agent_result(tmp_path, identity, AgentRecord(1, 0.3, 0.9, [0, 2], [1, 2, 3]), b"mask")
    info, mask = read_agent_result(tmp_path)
    assert (info["id"], info["rounds"], mask) == (1, 3, b"mask")
    info["retention_conv"] = None
    (tmp_path / "agent.json").write_text(json.dumps(info))
    line = one_line_error(lambda: read_agent_result(tmp_path))
    assert str(tmp_path / "agent.json") in line and "field 'retention_conv' is None, expected float" in line
    assert read_agent_result(tmp_path / "absent") is None  # an agent that did not finish


def test_atomic_writes_keep_secrets_private_and_the_old_file_on_failure(tmp_path):
    path = tmp_path / "secret.yaml"
    atomic_write(path, "old")
    os.chmod(path, 0o644)
    (tmp_path / "secret.yaml.tmp").write_text("a leftover")  # must not lend the new file its permissions
    atomic_write(path, "new", mode=0o600)
    assert path.read_text() == "new" and oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write(b"half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "new" and not list(tmp_path.glob("*.tmp"))
