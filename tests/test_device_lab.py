"""`edge-mcepl lab`: a broker plus N join processes gives the simulator's masks, in the simulator's run format.

Also the lab-config envelope and the documented precedence between the lab config and device profiles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from edge_mcepl.cli import main
from edge_mcepl.comm.broker.credentials import LabCredentials
from edge_mcepl.config import load_config
from edge_mcepl.devicelab.envelope import explicit_keys, make_envelope, parse_envelope
from edge_mcepl.devicelab.plan import plan_agent
from edge_mcepl.devicelab.schema import LabMessage, LabSettings
from edge_mcepl.errors import UserError
from edge_mcepl.metrics import read_metrics
from edge_mcepl.profiles import load_profile, policy_structure
from edge_mcepl.run_dir import read_config

from conftest import tiny_lab_config
from labsupport import (
    comparable,
    masks_of,
    needs_mosquitto,
    profile_file,
    signed_envelope,
    simulate,
    tiny_raw,
    write_yaml,
)


@needs_mosquitto
def test_a_mixed_width_lab_over_mosquitto_matches_the_simulator_bit_for_bit(tmp_path, capsys):
    # The lab's YAML leaves the structure to the devices: one profile says retention 0.2 (full width),
    # the other is a slow device whose auto policy gives it half the filters (round-robin).
    lab_yaml = write_yaml(tmp_path / "lab.yaml", tiny_raw(name="eq", rounds=4, eval_every=2))
    slow = profile_file(tmp_path, "slow", "auto", gflops=0.5)
    width = policy_structure(load_profile(slow), "small-cnn").width
    assert width == 0.5
    out = tmp_path / "run"
    profiles = f"{profile_file(tmp_path, 'small', 0.2)},{slow}"
    code = main(["lab", str(lab_yaml), "--out", str(out), "--profiles", profiles, "--broker-kind", "mosquitto",
                 "--round-deadline", "120"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "mosquitto" in printed and "mean personalized accuracy" in printed
    # The simulator with the same structure per agent, given directly.
    given = {"retention.conv": [0.2, 0.3], "retention.width": [1.0, width]}
    sim_dir = simulate(tiny_lab_config(name="eq", rounds=4, eval_every=2, **given), tmp_path)
    state, lab_masks = masks_of(out)
    sim_state, sim_masks = masks_of(sim_dir)
    assert lab_masks == sim_masks and len(lab_masks) == 4
    assert [a["retention_conv"] for a in state["agents"]] == [0.2, 0.3, 0.2, 0.3]
    assert [a["width"] for a in state["agents"]] == [1.0, 0.5, 1.0, 0.5]
    assert [a["profile"] for a in state["agents"]] == ["small", "slow", "small", "slow"]
    assert {k: v for k, v in state.items() if k != "agents"} == {k: v for k, v in sim_state.items() if k != "agents"}
    lab_rows, sim_rows = read_metrics(out / "metrics.jsonl"), read_metrics(sim_dir / "metrics.jsonl")
    assert comparable(lab_rows) == comparable(sim_rows)
    assert all(r["neighbours_heard"] == 2 and r["rejected"] == 0 for r in lab_rows)
    # a half-width agent sends about a quarter of a full one's bits
    sent = {r["agent"]: r["bytes_sent"] for r in lab_rows if r["round"] == 1}
    assert sent[1] < 0.4 * sent[0]
    assert (out / "summary.txt").read_text().strip() and (out / "config.yaml").is_file()
    lab_info = json.loads((out / "lab.json").read_text())
    assert lab_info["broker"].startswith("mosquitto") and set(lab_info["exit_codes"].values()) == {0}
    # Its config.yaml says what ran (each profile's structure), so simulating it gives the lab's masks.
    recorded = read_config(out)
    assert recorded.retention.conv == [0.2, 0.3, 0.2, 0.3] and recorded.retention.width == [1.0, 0.5, 1.0, 0.5]
    assert masks_of(simulate(recorded, tmp_path / "again"))[1] == lab_masks


def test_lab_over_the_builtin_python_broker_matches_the_simulator(tmp_path, capsys):
    raw = tiny_raw(name="py", agents=3, rounds=3, eval_every=3, **{"topology.kind": "complete"})
    lab_yaml = write_yaml(tmp_path / "lab.yaml", raw)
    out = tmp_path / "run"
    assert main(["lab", str(lab_yaml), "--out", str(out), "--broker-kind", "python", "--round-deadline", "120"]) == 0
    assert "built-in Python broker (MQTT 3.1.1" in capsys.readouterr().out
    sim_dir = simulate(tiny_lab_config(name="py", agents=3, rounds=3, eval_every=3, **{"topology.kind": "complete"}),
                       tmp_path)
    assert masks_of(out)[1] == masks_of(sim_dir)[1]


def test_a_lab_runs_config_records_the_agents_threads_and_names_what_one_config_cannot_hold(tmp_path, capsys):
    # No `threads` in the lab's YAML: `lab` gives each process cores ÷ agents. One profile sets a batch size.
    raw = tiny_raw(name="rec", agents=2, rounds=2, eval_every=2, threads=None, **{"algorithm.batch_size": None})
    profile = textwrap.dedent("""\
        name: {name}
        hardware: {{cores: 1, memory_mb: 1024, gflops: 5.0, uplink_mbps: 10.0}}
        budget: {{inference_latency_ms: 10.0, model_memory_mb: 16.0}}
        training: {{threads: 1, batch_size: {batch}}}
        retention_ratio: 0.3
        """)
    (tmp_path / "a.yaml").write_text(profile.format(name="a", batch=4))
    (tmp_path / "b.yaml").write_text(profile.format(name="b", batch="null"))
    out = tmp_path / "run"
    assert main(["lab", str(write_yaml(tmp_path / "lab.yaml", raw)), "--out", str(out), "--broker-kind", "python",
                 "--profiles", f"{tmp_path / 'a.yaml'},{tmp_path / 'b.yaml'}", "--round-deadline", "120"]) == 0
    printed = capsys.readouterr().out
    recorded = read_config(out)
    assert recorded.threads == max(1, (os.cpu_count() or 1) // 2)  # what the agents ran, not the default 2
    assert recorded.retention.conv == 0.3 and recorded.algorithm.batch_size == 128  # the lab's: agents disagree
    difference = "the agents ran different algorithm.batch_size (agent 0: 4, agent 1: 128)"
    assert (out / "config.yaml").read_text().splitlines()[0] == (
        f"# NOT reproducible by `edge-mcepl simulate` of this file: {difference}")
    assert f"cannot reproduce this run: {difference}" in printed
    agent = json.loads((out / "agents" / "agent_000" / "agent.json").read_text())
    assert agent["settings"] == {"threads": recorded.threads, "batch_size": 4, "device": "cpu"}
    assert not list(out.glob(".data-load.lock*"))  # the agents' data-load lock files went with them


def test_lab_refuses_a_non_empty_out_dir_and_a_bad_profile_before_starting(tmp_path, capsys):
    lab_yaml = write_yaml(tmp_path / "lab.yaml", tiny_raw())
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert main(["lab", str(lab_yaml), "--out", str(tmp_path / "busy")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["lab", str(lab_yaml), "--out", str(tmp_path / "new"), "--profiles", "rpi4,toaster"]) == 2
    assert "toaster" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_lab_refuses_a_missing_data_folder_before_starting(tmp_path, capsys):
    """A config's data_dir or a --data-dir that does not exist is a one-line error, not a silent search elsewhere."""
    missing = tmp_path / "no-such-folder"
    mnist = {"data.dataset": "mnist"}
    from_config = write_yaml(tmp_path / "lab.yaml", tiny_raw(**mnist, **{"data.data_dir": "no-such-folder"}))
    from_cli = write_yaml(tmp_path / "cli.yaml", tiny_raw(**mnist))
    for args in ([str(from_config)], [str(from_cli), "--data-dir", str(missing)]):
        assert main(["lab", *args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"edge-mcepl: error: mnist not found: data folder {missing} does not exist "
                       "(data.data_dir, or --data-dir)"]
    assert not (tmp_path / "out").exists()


def test_lab_console_says_what_data_it_uses_and_the_agents_use_the_same(tmp_path, capsys):
    """A missing dataset the config lets fall back: the NOTE and the data line on the lab's console, as simulate's."""
    setting = {"name": "fb", "agents": 2, "rounds": 2, "eval_every": 2, "topology.kind": "complete",
               "data.dataset": "mnist", "data.data_dir": str(tmp_path / "no-mnist"), "data.fallback_to_synthetic": True}
    out = tmp_path / "run"
    assert main(["lab", str(write_yaml(tmp_path / "lab.yaml", tiny_raw(**setting))), "--out", str(out),
                 "--broker-kind", "python"]) == 0
    printed = capsys.readouterr().out
    assert f"NOTE: mnist not found: data folder {tmp_path / 'no-mnist'} does not exist" in printed
    assert "NOTE: falling back to SYNTHETIC data" in printed
    assert "data: synthetic (1, 28, 28) data (120 train / 40 test images)" in printed
    for i in range(2):  # the agents were pointed at the same missing folder (not left to find MNIST elsewhere)
        assert "synthetic (1, 28, 28) data" in (out / "agents" / f"agent_{i:03d}" / "join.log").read_text()
    assert masks_of(out)[1] == masks_of(simulate(tiny_lab_config(**setting), tmp_path))[1]
    assert read_config(out).data.dataset == "synthetic"  # the run's config.yaml records what was used


def test_envelope_round_trip_embeds_files_and_validates(tmp_path):
    graph = tmp_path / "graph.txt"
    graph.write_text("0 1 1 0\n1 0 0 1\n1 0 0 1\n0 1 1 0\n")
    lab_yaml = write_yaml(tmp_path / "lab.yaml", tiny_raw(**{"topology.kind": "file", "topology.file": "graph.txt"}))
    config = load_config(lab_yaml)
    envelope = make_envelope(config, explicit_keys(lab_yaml), LabSettings(round_deadline_s=7, max_staleness=2))
    creds = LabCredentials.generate("t", config.agents)
    payload, key = signed_envelope(envelope, config, creds=creds)
    graph.unlink()  # a remote device does not have the coordinator's files
    env = parse_envelope(payload, "t", tmp_path / "device-files", lab_public_key=key)
    assert str(env.config.topology.file).startswith(str(tmp_path / "device-files"))
    assert env.config == config.__class__(**{**config.__dict__, "topology": env.config.topology})
    assert env.message.neighbours == {0: [1, 2], 1: [0, 3], 2: [0, 3], 3: [1, 2]}
    assert (env.message.settings.round_deadline_s, env.message.settings.max_staleness) == (7, 2)
    assert "topology.file" in env.message.explicit and "retention.conv" not in env.message.explicit
    with pytest.raises(UserError, match="is for lab 't'"):
        parse_envelope(payload, "other", tmp_path / "x", lab_public_key=key)
    bad = dict(envelope, config={**envelope["config"], "rounds": -1})
    with pytest.raises(UserError, match="rounds: -1 is outside"):
        parse_envelope(signed_envelope(bad, config, creds=creds)[0], "t", tmp_path / "y", lab_public_key=key)
    with pytest.raises(UserError, match="format 'pickle'"):
        parse_envelope(signed_envelope(dict(envelope, format="pickle"), config, creds=creds)[0], "t", tmp_path / "z",
                       lab_public_key=key)


def test_a_made_envelope_is_its_model_dumped_and_round_trips(tmp_path):
    config = tiny_lab_config()
    envelope = make_envelope(config, ["retention.conv"], LabSettings(round_deadline_s=7.5))
    assert list(envelope) == ["format", "lab", "run_id", "fingerprint", "num_classes", "config", "files", "explicit",
                              "settings", "neighbours", "published_at", "roster",
                              "signature"]  # docs/wire-format.md, in that order; the last two empty until signed
    assert (envelope["roster"], envelope["signature"]) == ({}, "")
    assert envelope["settings"] == {"round_deadline_s": 7.5, "max_staleness": 1, "start_timeout_s": 600.0}
    assert list(envelope["neighbours"]) == [str(i) for i in range(config.agents)]  # JSON object keys are strings
    payload, key = signed_envelope(envelope, config)
    signed = json.loads(payload)
    assert list(signed) == list(envelope) and len(signed["roster"]) == config.agents and signed["signature"]
    assert LabMessage.model_validate_json(payload).model_dump(mode="json") == signed
    env = parse_envelope(payload, "test", tmp_path / "f", lab_public_key=key)
    assert env.message.model_dump(mode="json") == signed and env.config == config


def test_envelope_unknown_keys_and_wrong_types_name_the_topic_and_the_dotted_field(tmp_path):
    config = tiny_lab_config()
    envelope = make_envelope(config, [], LabSettings())
    creds = LabCredentials.generate("test", config.agents)
    settings = envelope["settings"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"published": "now"}, "unknown key 'published' (known: config, explicit, files, fingerprint, format, "),
        ({"settings": {**settings, "deadline_s": 3}}, "unknown key 'settings.deadline_s' (known: max_staleness, "),
        ({"files": {"data.data_dir": {"name": "d", "text": ""}}},
         "unknown key 'files.data.data_dir' (known: data.classes_file, "),
        ({"settings": {**settings, "max_staleness": 1.5}}, "settings.max_staleness: expected an int, got 1.5"),
        ({"settings": {**settings, "round_deadline_s": 0}}, "settings.round_deadline_s: 0.0 is outside [0.01, 1e6]"),
        ({"neighbours": {"0": [1, "2"]}}, "neighbours.0[1]: expected an int, got '2'"),
        ({"files": {"topology.file": {"name": "g.txt"}}}, "missing key 'files.topology.file.text'"),
        ({"config": [1]}, "config: expected a mapping, got [1]"),
        ({"config": {**envelope["config"], "data": 3}}, "data: expected a mapping to set 'data.data_dir' in, got 3"),
    ]
    for changed, expected in cases:
        with pytest.raises(UserError) as err:
            parse_envelope(signed_envelope({**envelope, **changed}, config, creds=creds)[0], "test", tmp_path / "f",
                           lab_public_key=creds.lab_public_key())
        line = str(err.value)
        assert "\n" not in line and line.startswith("lab config on edge-mcepl/test/config: ") and expected in line, line


def test_lab_settings_options_are_one_line_errors_before_anything_starts(tmp_path, capsys):
    lab_yaml = write_yaml(tmp_path / "lab.yaml", tiny_raw())
    for command, expected in [
        (["broker", str(lab_yaml), "--dir", str(tmp_path / "b"), "--round-deadline", "0"],
         "command line: round_deadline_s: 0.0 is outside [0.01, 1e6]"),
        (["lab", str(lab_yaml), "--out", str(tmp_path / "out"), "--max-staleness", "-1"],
         "command line: max_staleness: -1 is outside [0, 1000]"),
    ]:
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "b").exists() and not (tmp_path / "out").exists()
    code = "import sys, edge_mcepl.commands.broker, edge_mcepl.devicelab.schema; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # the settings model needs no torch


def test_structure_precedence_lab_explicit_then_profile_then_default(tmp_path):
    rpi4 = load_profile("rpi4")
    for explicit, profile, want in [
        (["retention.conv", "retention.width"], rpi4, (0.25, 0.75)),  # the lab config decides both
        (["retention.conv"], rpi4, (0.25, 0.5)),  # the lab's conv, the profile's width
        ([], rpi4, (0.3, 0.5)),  # the profile's auto policy: a width; conv is the lab default
        ([], load_profile(profile_file(tmp_path, "fixed", 0.15)), (0.15, 1.0)),  # the profile's number, full width
        ([], None, (0.3, 1.0)),  # no profile: the lab's defaults
    ]:
        values = {"retention.conv": 0.25, "retention.width": 0.75}
        config = tiny_lab_config(model="alexnet-cifar", **{k: values[k] for k in explicit},
                                 **{"data.dataset": "cifar10"})
        payload, key = signed_envelope(make_envelope(config, explicit, LabSettings()), config, explicit,
                                       {1: profile.name} if profile is rpi4 else {})
        env = parse_envelope(payload, "test", tmp_path / "f", lab_public_key=key)
        if profile is not None and profile is not rpi4:  # a profile the roster was not declared with
            with pytest.raises(UserError, match="but the lab's roster declares"):
                plan_agent(env, 1, profile)
            payload, key = signed_envelope(make_envelope(config, explicit, LabSettings()), config, explicit,
                                           {1: profile_file(tmp_path, "fixed", 0.15)})
            env = parse_envelope(payload, "test", tmp_path / "f", lab_public_key=key)
        plan = plan_agent(env, 1, profile)
        got = (plan.config.retention.for_agent(1)[0], plan.config.retention.width_for(1))
        assert got == want, (explicit, profile and profile.name)
        assert plan.threads == (profile.training_threads if profile else config.threads)
        assert any(note.startswith(f"width {want[1]:g}:") for note in plan.notes), plan.notes
    assert explicit_keys(write_yaml(tmp_path / "a.yaml", {"retention": {"conv": 0.3}, "rounds": 3}),
                         {"seed": 3, "agents": None}) == ["retention.conv", "rounds", "seed"]


def test_a_device_lab_trains_on_the_cpu_whatever_the_lab_configs_device(tmp_path):
    """The lab config is shared by every device (a Pi has no CUDA): join keeps to the CPU and says so."""
    config = tiny_lab_config(device="cuda")
    payload, key = signed_envelope(make_envelope(config, ["device"], LabSettings()), config, ["device"])
    env = parse_envelope(payload, "test", tmp_path / "f", lab_public_key=key)
    assert env.config.device == "cuda"
    plan = plan_agent(env, 0)
    assert plan.config.device == "cpu"
    assert any(note.startswith("device cpu:") and "'cuda'" in note for note in plan.notes)
    payload, key = signed_envelope(make_envelope(tiny_lab_config(), [], LabSettings()), tiny_lab_config())
    assert plan_agent(parse_envelope(payload, "test", tmp_path / "g", lab_public_key=key), 0).config.device == "cpu"
