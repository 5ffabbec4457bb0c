"""`edge-mcepl lab` interrupted and resumed: the printed hint continues the run exactly as it began.

One lab is started with ``--profiles`` and command-line ``--rounds/--eval-every`` (the YAML says
otherwise) and Ctrl-C'd mid-run (SIGINT to its process group, as a terminal does); the tests then
resume it — with conflicting options (refused), with an agent that cannot come back (the lab stops,
naming it), and with the printed hint, verbatim (the simulator's masks).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from edge_mcepl.cli import main
from edge_mcepl.metrics import read_metrics
from edge_mcepl.run_dir import agent_dir

from conftest import tiny_lab_config
from labsupport import (
    ROOT,
    comparable,
    masks_of,
    needs_mosquitto,
    profile_file,
    rows,
    simulate,
    tiny_raw,
    wait_until,
    write_yaml,
)

pytestmark = needs_mosquitto

ROUNDS, EVAL_EVERY = 60, 7  # on the command line; the YAML says 4 and 2
SETTING = {"name": "rs", "agents": 2, "rounds": 4, "eval_every": 2, "topology.kind": "complete"}


@dataclass
class Interrupted:
    """A lab stopped by Ctrl-C: its YAML, run directory, console output and lab.json right after."""

    yaml: Path
    out: Path
    printed: str
    lab_json: dict
    profiles: str

    @property
    def hint(self) -> str:
        lines = [line for line in self.printed.splitlines() if line.startswith("resume with: ")]
        assert len(lines) == 1, self.printed
        return lines[0].removeprefix("resume with: ")


def lab_process(args: list[str], log: Path) -> subprocess.Popen:
    """``edge-mcepl lab`` in a session of its own: a SIGINT to its group is a terminal's Ctrl-C (joins included)."""
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "edge_mcepl.cli", "lab", *args], stdout=f,
                                stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Interrupted:
    tmp = tmp_path_factory.mktemp("lab-resume")
    lab_yaml = write_yaml(tmp / "lab.yaml", tiny_raw(**SETTING))
    profiles = f"{profile_file(tmp, 'small', 0.2)},{profile_file(tmp, 'big', 0.4)}"
    out, log = tmp / "run", tmp / "console.txt"
    proc = lab_process([str(lab_yaml), "--out", str(out), "--profiles", profiles, "--rounds", str(ROUNDS),
                        "--eval-every", str(EVAL_EVERY), "--broker-kind", "mosquitto"], log)
    try:
        deadline = time.monotonic() + 60
        while min(len(rows(agent_dir(out, i))) for i in range(2)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done = [len(rows(agent_dir(out, i))) for i in range(2)]
    assert all(3 <= d < ROUNDS for d in done), done
    return Interrupted(lab_yaml, out, log.read_text(), json.loads((out / "lab.json").read_text()), profiles)


def test_resume_needs_out_and_refuses_options_that_differ_from_the_runs(interrupted, capsys):
    resume = [str(interrupted.yaml), "--out", str(interrupted.out), "--resume"]
    before = (interrupted.out / "lab.json").read_bytes()
    for args, expected in [
        (resume[:1] + ["--resume"], "--resume needs --out RUN_DIR"),
        (resume + ["--rounds", "50"], f"--resume: --rounds 50 differs from the run's {ROUNDS} "),
        (resume + ["--profiles", "rpi4"], f"--resume: --profiles rpi4 differs from the run's {interrupted.profiles} "),
        (resume + ["--round-deadline", "5"], "--resume: --round-deadline 5.0 differs from the run's 60.0 "),
        (resume + ["--broker-kind", "python"], "--resume: --broker-kind python differs from the run's mosquitto "),
    ]:
        assert main(["lab", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (args, err)
    other = write_yaml(interrupted.yaml.with_name("other.yaml"), tiny_raw(**SETTING))
    assert main(["lab", str(other), *resume[1:]]) == 2
    assert f"--resume: config {other} differs from the run's {interrupted.yaml} " in capsys.readouterr().err
    original = interrupted.yaml.read_text()
    try:
        write_yaml(interrupted.yaml, tiny_raw(**{**SETTING, "seed": 6}))
        assert main(["lab", *resume]) == 2
        assert f"--resume: {interrupted.yaml} (or a file it names) changed since run " in capsys.readouterr().err
    finally:
        interrupted.yaml.write_text(original)
    assert (interrupted.out / "lab.json").read_bytes() == before


def test_an_agent_that_cannot_come_back_stops_the_lab_naming_it_and_its_error(interrupted, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(interrupted.out, out)
    checkpoint = agent_dir(out, 1) / "checkpoint.npz"
    checkpoint.write_bytes(b"not a checkpoint")
    began = time.monotonic()
    assert main(["lab", str(interrupted.yaml), "--out", str(out), "--resume"]) == 2
    assert time.monotonic() - began < 40  # not the 60 s round deadlines of agent 0, waiting for agent 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"edge-mcepl: error: agent 1: join process exited with status 2: {checkpoint}"), err
    assert f"see {agent_dir(out, 1) / 'join.log'}" in err[0]
    assert f"resume with: edge-mcepl lab {interrupted.yaml} --out {out} --resume" in captured.out
    lab_json = json.loads((out / "lab.json").read_text())
    assert lab_json["exit_codes"]["1"] == 2 and len(lab_json["sessions"]) == 2


def test_a_join_stopped_by_a_signal_stops_the_lab_as_interrupted(interrupted, tmp_path):
    """One join SIGTERM'd from outside has checkpointed: the lab stops the rest and says how to resume."""
    out = tmp_path / "run"
    shutil.copytree(interrupted.out, out)
    before = len(rows(agent_dir(out, 0)))
    proc = lab_process([str(interrupted.yaml), "--out", str(out), "--resume"], tmp_path / "console.txt")
    try:
        wait_until(lambda: len(rows(agent_dir(out, 0))) > before, 60, "a resumed round", [proc])
        joins = {int(Path(c.cmdline()[c.cmdline().index("--bundle") + 1]).stem.removeprefix("agent-")): c
                 for c in psutil.Process(proc.pid).children() if "join" in c.cmdline()}
        joins[0].send_signal(signal.SIGTERM)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    printed = (tmp_path / "console.txt").read_text()
    assert "agent 0's join process was stopped by SIGTERM — stopping the other agents" in printed
    assert f"resume with: edge-mcepl lab {interrupted.yaml} --out {out} --resume" in printed
    assert json.loads((out / "lab.json").read_text())["exit_codes"] == {"0": 143, "1": 143}


def test_a_resume_may_host_the_agents_in_one_process_and_still_gives_the_simulators_masks(interrupted, tmp_path,
                                                                                         capsys):
    """How many agents a join process hosts is not part of the run: the two agents resume together in one."""
    out = tmp_path / "run"
    shutil.copytree(interrupted.out, out)
    assert main(["lab", str(interrupted.yaml), "--out", str(out), "--resume", "--agents-per-process", "2"]) == 0
    assert "started 1 join process, up to 2 agents each" in capsys.readouterr().out
    config = tiny_lab_config(**{**SETTING, "rounds": ROUNDS, "eval_every": EVAL_EVERY, "retention.conv": [0.2, 0.4]})
    assert masks_of(out)[1] == masks_of(simulate(config, tmp_path))[1]


def test_the_printed_hint_resumes_verbatim_to_the_simulators_masks(interrupted, capsys):
    assert interrupted.hint == f"edge-mcepl lab {interrupted.yaml} --out {interrupted.out} --resume"
    program, *args = shlex.split(interrupted.hint)
    assert program == "edge-mcepl" and main(args) == 0
    printed = capsys.readouterr().out
    assert f"resuming run {interrupted.lab_json['run_id']}" in printed
    out = interrupted.out
    config = tiny_lab_config(**{**SETTING, "rounds": ROUNDS, "eval_every": EVAL_EVERY, "retention.conv": [0.2, 0.4]})
    sim_dir = simulate(config, out.parent)
    state, lab_masks = masks_of(out)
    assert lab_masks == masks_of(sim_dir)[1] and len(lab_masks) == 2
    assert [a["retention_conv"] for a in state["agents"]] == [0.2, 0.4]
    # Learning, masks and every mask used (digests) are the simulator's; only the bytes of the resumed rounds
    # may differ: a resumed agent asks its neighbours for what it may have lost (keyframes and copies).
    wire = {"bytes_sent", "bytes_received", "keyframe", "resent"}
    assert [{k: v for k, v in r.items() if k not in wire} for r in comparable(read_metrics(out / "metrics.jsonl"))] \
        == [{k: v for k, v in r.items() if k not in wire} for r in comparable(read_metrics(sim_dir / "metrics.jsonl"))]
    # lab.json: the run's fields as they were written at the start; the first session kept, the resume appended.
    lab_json, first = json.loads((out / "lab.json").read_text()), interrupted.lab_json
    session_fields = {"broker", "broker_url", "exit_codes", "sessions"}
    assert {k: v for k, v in lab_json.items() if k not in session_fields} == \
        {k: v for k, v in first.items() if k not in session_fields}
    assert lab_json["sessions"][0] == first["sessions"][0]
    assert set(first["sessions"][0]["exit_codes"].values()) == {128 + signal.SIGINT}  # Ctrl-C reached every join
    assert set(lab_json["exit_codes"].values()) == {0}
    assert first["overrides"] == {"rounds": ROUNDS, "eval_every": EVAL_EVERY}
