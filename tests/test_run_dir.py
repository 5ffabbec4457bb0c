"""The run directory: the device lab's merge writes what the simulator writes; reading names the bad file and field."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from edge_mcepl.atomic import atomic_file, atomic_write
from edge_mcepl.errors import UserError
from edge_mcepl.metrics import read_metrics, to_jsonl
from edge_mcepl.run_dir import (
    AgentRecord,
    AgentResult,
    AgentSettings,
    RunIdentity,
    agent_dir,
    config_as_run,
    merge_lab_run,
    read_agent_result,
    read_state,
    write_agent_result,
)
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


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
    identity = RunIdentity.of(state)
    rows = read_metrics(sim / "metrics.jsonl")
    lab = tmp_path / "lab"
    for entry in state.agents:
        folder = agent_dir(lab, entry.id)
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text(to_jsonl([r for r in rows if r["agent"] == entry.id]) + '{"torn')
        write_agent_result(folder, identity, AgentRecord.of(entry), (sim / "final" / entry.mask_file).read_bytes(),
                           lab="t", run_id="r", profile="rpi4", notes=[])
    merge_lab_run(lab, config)
    merged = read_state(lab)
    assert [a.replace(profile=None) for a in merged.agents] == state.agents
    assert {a.profile for a in merged.agents} == {"rpi4"}
    assert merged.model_dump(exclude={"agents"}) == state.model_dump(exclude={"agents"})
    assert "profile" not in json.loads((sim / "final" / "state.json").read_text())["agents"][0]  # a simulated run
    for entry in state.agents:
        assert (lab / "final" / entry.mask_file).read_bytes() == (sim / "final" / entry.mask_file).read_bytes()
    assert read_metrics(lab / "metrics.jsonl") == rows  # the torn last lines were skipped
    for name in ("config.yaml", "summary.txt"):
        assert (lab / name).read_text() == (sim / name).read_text()


def test_the_config_as_run_holds_each_agents_retention_and_the_settings_the_agents_agree_on():
    config = tiny_lab_config(agents=3, threads=2, device="cuda")
    identity = RunIdentity(model="small-cnn", num_classes=10, weights_seed=5, fingerprint="00" * 16, rounds=3)

    def result(i: int, retention: float, threads: int, batch_size: int) -> AgentResult:
        record = AgentRecord(id=i, retention_conv=retention, retention_linear=0.9, neighbours=[], classes=[])
        return AgentResult(format="edge-mcepl-run/1", **dict(identity), **dict(record), mask=True,
                           settings=AgentSettings(threads=threads, batch_size=batch_size, device="cpu"))

    as_run, differences = config_as_run(config, {0: result(0, 0.2, 1, 8), 1: result(1, 0.4, 1, 8)})
    assert as_run.retention.conv == [0.2, 0.4, 0.3]  # agent 2 did not finish: the lab's value
    assert (as_run.threads, as_run.algorithm.batch_size, as_run.device, differences) == (1, 8, "cpu", [])
    assert as_run.replace(retention=config.retention, threads=2, device="cuda") == config  # nothing else moved
    as_run, differences = config_as_run(config, {0: result(0, 0.3, 4, 8), 2: result(2, 0.3, 1, 8)})
    assert (as_run.retention, as_run.threads) == (config.retention, 2)
    assert differences == ["the agents ran different threads (agent 0: 4, agent 2: 1)"]


def test_a_bad_state_file_names_the_file_and_the_field(simulated, tmp_path):
    _, sim = simulated
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    state = json.loads((sim / "final" / "state.json").read_text())
    entry = state["agents"][0]
    path = run / "final" / "state.json"
    for field, value, expected in [
        ("num_classes", "ten", "num_classes: expected an int, got 'ten'"),
        ("agents", [{k: v for k, v in entry.items() if k != "mask_file"}], "missing key 'agents[0].mask_file'"),
        ("agents", [dict(entry, id=True)], "agents[0].id: expected an int, got True"),
        ("fingerprint", "zz", "fingerprint: expected 32 hex digits (a weights fingerprint), got 'zz'"),
        ("format", "edge-mcepl-run/2", "format 'edge-mcepl-run/2', this edge-mcepl reads edge-mcepl-run/1"),
    ]:
        path.write_text(json.dumps(dict(state, **{field: value})))
        line = one_line_error(lambda: read_state(run))
        assert line.startswith(f"{path}: ") and expected in line, line


def test_a_bad_agent_result_names_the_file_and_the_field(tmp_path):
    identity = RunIdentity(model="small-cnn", num_classes=10, weights_seed=5, fingerprint="00" * 16, rounds=3)
    record = AgentRecord(id=1, retention_conv=0.3, retention_linear=0.9, neighbours=[0, 2], classes=[1, 2, 3])
    write_agent_result(tmp_path, identity, record, b"mask")
    result = read_agent_result(tmp_path)
    assert result is not None
    info, mask = result
    assert (info.id, info.rounds, mask) == (1, 3, b"mask")
    assert (RunIdentity.of(info), AgentRecord.of(info)) == (identity, record)  # the writer's models, read back
    raw = json.loads((tmp_path / "agent.json").read_text())
    (tmp_path / "agent.json").write_text(json.dumps(dict(raw, retention_conv=None)))
    line = one_line_error(lambda: read_agent_result(tmp_path))
    assert str(tmp_path / "agent.json") in line and "retention_conv: expected a number, got None" in line
    assert read_agent_result(tmp_path / "absent") is None  # an agent that did not finish


def test_run_files_refuse_unknown_keys_and_wrong_types_naming_the_file_and_the_dotted_field(simulated, tmp_path):
    _, sim = simulated
    state = json.loads((sim / "final" / "state.json").read_text())
    entry = state["agents"][0]
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    path = run / "final" / "state.json"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"agents": [dict(entry, mask="m")]}, "unknown key 'agents[0].mask' (known: classes, id, mask_file, "),
        ({"agents": [dict(entry, neighbours=[1, "2"])]}, "agents[0].neighbours[1]: expected an int, got '2'"),
    ]
    for changed, expected in cases:
        path.write_text(json.dumps({**state, **changed}))
        line = one_line_error(lambda: read_state(run))
        assert line.startswith(f"{path}: ") and expected in line, line
    identity = RunIdentity.of(read_state(sim))
    write_agent_result(tmp_path, identity, AgentRecord.of(read_state(sim).agents[0]), b"mask", lab="t")
    raw = json.loads((tmp_path / "agent.json").read_text())
    cases = [({"learning_rate": 0.1}, "unknown key 'learning_rate' (known: classes, fingerprint, "),
             ({"notes": ["ok", 3]}, "notes[1]: expected a string, got 3")]
    for changed, expected in cases:
        (tmp_path / "agent.json").write_text(json.dumps({**raw, **changed}))
        line = one_line_error(lambda: read_agent_result(tmp_path))
        assert line.startswith(f"{tmp_path / 'agent.json'}: ") and expected in line, line


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
