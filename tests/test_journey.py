"""The README's journeys, run end to end in short form, so the README cannot drift from the code.

Each command is taken from the README (or the Makefile target it documents) and run as a user
would, in a subprocess, with only short-form options appended (fewer rounds, an output folder).
If the README changes a command, this test runs the new one — or fails because it is gone.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from edge_mcepl.comm.broker.launcher import free_port
from edge_mcepl.config import load_config
from edge_mcepl.simulator import Simulator

from labsupport import masks_of, needs_mosquitto, wait_until

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CLI = [sys.executable, "-m", "edge_mcepl.cli"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def fenced(lang: str) -> list[str]:
    """The README's fenced blocks of one language."""
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def readme_command(prefix: str) -> list[str]:
    """The first command line of a README bash block that starts with ``prefix`` (comment dropped)."""
    for block in fenced("bash"):
        for line in block.splitlines():
            if line.startswith(prefix):
                return shlex.split(line, comments=True)
    raise AssertionError(f"the README no longer shows a command starting {prefix!r}")


def argv(words: list[str]) -> list[str]:
    """A README command as this interpreter runs it (`edge-mcepl` or `.venv/bin/edge-mcepl`)."""
    assert words[0].endswith("edge-mcepl"), words
    return CLI + words[1:]


def run(words: list[str], cwd: Path = ROOT, code: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv(words), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == code, f"{' '.join(words)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def one_line_error(words: list[str], cwd: Path, *expected: str) -> None:
    """A user mistake: exit 2, one line on stderr naming the culprit, no traceback."""
    proc = run(words, cwd, code=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-mcepl: error:"), proc.stderr
    assert all(text in lines[0] for text in expected), lines[0]


def test_demo_export_infer_and_bench_as_the_readme_says(tmp_path):
    # make demo = the Makefile's simulate line (the README's first command).
    assert "make demo" in fenced("bash")[0]
    demo = re.search(r"\$\(BIN\)/(edge-mcepl simulate \S+)", (ROOT / "Makefile").read_text())
    assert demo, "the Makefile's demo target no longer runs edge-mcepl simulate"
    run_dir = tmp_path / "demo"
    out = run(demo.group(1).split() + ["--rounds", "2", "--eval-every", "2", "--out", str(run_dir), "--no-progress"])
    assert "mean personalized accuracy" in out.stdout and (run_dir / "final" / "state.json").is_file()

    # export, into the folder the README's infer examples read from (export/RUN/agent_000/).
    run(["edge-mcepl", "export", str(run_dir), "--agent", "0", "--out", str(tmp_path / "export" / "RUN")])
    model = tmp_path / "export" / "RUN" / "agent_000" / "model.onnx"
    assert model.is_file() and (model.parent / "manifest.json").is_file()

    # infer on image files and a folder of frames, exactly as the README's lines say.
    rng = np.random.default_rng(0)
    (tmp_path / "frames").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "frames" / f"{i:03d}.png")
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / name)
    np.save(tmp_path / "y.npy", np.array([3, 7], np.int64))
    folder = run(readme_command("edge-mcepl infer export/RUN/agent_000/model.onnx frames/"), tmp_path)
    assert len([line for line in folder.stdout.splitlines() if "\t" in line]) == 3
    files = run(readme_command("edge-mcepl infer export/RUN/agent_000/model.onnx a.png"), tmp_path)
    by_file = dict(line.split("\t") for line in files.stdout.splitlines() if "\t" in line)
    assert set(by_file) == {"a.png", "b.jpg"}, files.stdout

    # The README's Python recipe for a .npy batch, run as written; infer on it agrees with the files.
    (python,) = [block for block in fenced("python") if "preprocess_uint8" in block]
    subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=ENV, check=True, timeout=120)
    model_arg = "export/RUN/agent_000/model.onnx"
    raw = run(["edge-mcepl", "infer", model_arg, "batch.npy", "--raw-uint8", "--out", "raw.npy"], tmp_path)
    ready = run(["edge-mcepl", "infer", model_arg, "inputs.npy", "--out", "ready.npy"], tmp_path)
    assert raw.returncode == ready.returncode == 0
    predictions = np.load(tmp_path / "raw.npy")
    assert np.array_equal(predictions, np.load(tmp_path / "ready.npy"))
    assert [int(p) for p in predictions] == [int(by_file["a.png"]), int(by_file["b.jpg"])]

    run(["edge-mcepl", "bench-infer", str(model), "--batch", "1", "--threads", "1", "--seconds", "0.2",
         "--json", str(tmp_path / "bench.json")])
    assert json.loads((tmp_path / "bench.json").read_text())

    # The bad-input cases a new user hit: one line each, before any work.
    one_line_error(["edge-mcepl", "infer", model_arg, "a.png", "--labels", "missing.npy"], tmp_path, "missing.npy")
    one_line_error(["edge-mcepl", "bench-infer", model_arg, "--json", "nope/b.json"], tmp_path, "nope")
    one_line_error(["edge-mcepl", "export", str(run_dir), "--out", "/dev/null/x"], tmp_path, "/dev/null")
    one_line_error(["edge-mcepl", "profile", "detect", "--out", "nope/p.yaml"], tmp_path, "nope")
    np.save(tmp_path / "nan.npy", np.full((1, 3, 32, 32), np.nan, np.float32))
    one_line_error(["edge-mcepl", "infer", model_arg, "nan.npy"], tmp_path, "nan.npy")


@needs_mosquitto
def test_device_lab_interrupted_and_resumed_with_the_printed_hint(tmp_path):
    words = readme_command(".venv/bin/edge-mcepl lab examples/device-lab.yaml")
    run_dir = tmp_path / "lab"
    # Enough rounds that Ctrl-C after agent 0's first one lands mid-run on an idle machine too.
    lab = subprocess.Popen(argv(words) + ["--rounds", "8", "--eval-every", "8", "--out", str(run_dir)], cwd=ROOT,
                           env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)  # its own process group, as in a terminal
    try:
        first = run_dir / "agents" / "agent_000" / "metrics.jsonl"
        wait_until(lambda: first.exists() and first.read_text().strip(), 300, "agent 0's first round", [lab])
        os.killpg(lab.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        printed, _ = lab.communicate(timeout=120)
    finally:
        if lab.poll() is None:
            lab.kill()
    assert lab.returncode == 130, printed
    hint = re.search(r"resume with: (.+)", printed)
    assert hint, printed
    time.sleep(0.5)
    resumed = run(shlex.split(hint.group(1)))
    assert "mean personalized accuracy" in resumed.stdout

    # The run's config.yaml says what ran: simulating it gives the lab's masks, interrupt and all.
    Simulator(load_config(run_dir / "config.yaml"), log=lambda _: None).run(tmp_path / "sim", progress=False)
    state, lab_masks = masks_of(run_dir)
    assert state["rounds"] == 8 and len(lab_masks) == 4
    assert lab_masks == masks_of(tmp_path / "sim")[1]



@needs_mosquitto
def test_by_hand_a_broker_and_four_devices_with_their_bundles(tmp_path):
    """The README's "By hand" journey: the broker command, then each device's `join --bundle` line."""
    broker_words = readme_command(".venv/bin/edge-mcepl broker examples/device-lab.yaml")
    block = next(b for b in fenced("bash") if "join --bundle" in b)
    bundles = re.search(r"^B=(\S+)$", block, flags=re.M)
    assert bundles, "the README's join block no longer names the bundles folder"
    joins = [shlex.split(line.replace("$B", bundles.group(1))) for line in block.splitlines()
             if "edge-mcepl join --bundle" in line]
    assert len(joins) == 4
    port = str(free_port())
    words = [str(ROOT / w) if w == "examples/device-lab.yaml" else w for w in broker_words]
    words = [port if prev == "--port" else w for prev, w in zip(["", *words], words)]
    broker = subprocess.Popen(argv(words + ["--rounds", "2", "--eval-every", "2"]), cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed: list[str] = []
    try:
        for line in broker.stdout:  # type: ignore[union-attr]
            printed.append(line)
            if line.startswith("Ctrl-C stops the broker."):
                break
        assert any("device bundles:" in line for line in printed), "".join(printed)
        procs = [subprocess.Popen(argv(w), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for w in joins]  # each bundle names the broker: nothing else needed
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, outputs
        profiles = broker_words[broker_words.index("--profiles") + 1].split(",")
        for agent, (out, profile) in enumerate(zip(outputs, profiles)):
            assert f"agent {agent}: profile {profile}, as the lab's roster assigns" in out, out
            assert f"agent {agent}: done — 2 rounds" in out, out
    finally:
        broker.send_signal(signal.SIGINT)
        broker.wait(60)
    assert broker.returncode == 0


@needs_mosquitto
def test_the_demo_lab_with_its_dashboard_as_the_readme_says(tmp_path):
    """The README's "Dashboard" command: the demo lab serves its live page; the page lists its four devices."""
    words = readme_command(".venv/bin/edge-mcepl lab examples/device-lab.yaml --profiles "
                           "rpi4,rpi5,jetson-orin-nano,laptop --dashboard")
    lab = subprocess.Popen(argv(words) + ["--rounds", "2", "--eval-every", "2", "--dashboard", "0", "--out",
                                          str(tmp_path / "lab")], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    printed: list[str] = []
    try:
        for line in lab.stdout:  # type: ignore[union-attr]
            printed.append(line)
            if "dashboard:" in line:
                break
        url = re.search(r"dashboard:\s+(http://\S+)", "".join(printed))
        assert url, "".join(printed)
        shown: dict = {}

        def online() -> bool:
            nonlocal shown
            with urllib.request.urlopen(url.group(1) + "api/state", timeout=10) as f:
                shown = json.loads(f.read())
            return any(d["state"] == "online" for d in shown["devices"].values())

        wait_until(online, 300, "a device online on the demo lab's dashboard", [lab])
        assert [d["profile"] for d in shown["devices"].values()] == ["rpi4", "rpi5", "jetson-orin-nano", "laptop"]
        rest, _ = lab.communicate(timeout=600)
    finally:
        if lab.poll() is None:
            lab.kill()
    assert lab.returncode == 0, "".join(printed) + rest
