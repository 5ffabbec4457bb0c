"""`lab --dashboard` and `broker --dashboard`: the coordinator serves the live page itself, as the observer."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from labsupport import tiny_raw, write_yaml

pytestmark = pytest.mark.mosquitto
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def start(*words: str, cwd) -> tuple[subprocess.Popen, list[str]]:
    """The command, its output collected line by line in the background."""
    proc = subprocess.Popen([sys.executable, "-m", "edge_mcepl.cli", *words], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    return proc, lines


def dashboard_url(proc: subprocess.Popen, lines: list[str], timeout: float = 120) -> str:

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = [m.group(1) for line in list(lines) if (m := re.search(r"dashboard:\s+(http://\S+)", line))]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("no dashboard URL printed:\n" + "".join(lines))


def state(url: str) -> dict:
    with urllib.request.urlopen(url + "api/state", timeout=10) as f:
        return json.loads(f.read())


def test_lab_serves_the_dashboard_while_it_runs(tmp_path):

    raw = tiny_raw(name="att", rounds=150, eval_every=10, **{"data.synthetic_train_per_class": 100})
    config = write_yaml(tmp_path / "lab.yaml", raw)
    proc, lines = start("lab", str(config), "--out", str(tmp_path / "run"), "--dashboard", "0", cwd=tmp_path)
    try:
        url = dashboard_url(proc, lines)
        seen: dict = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            seen = state(url)
            if len(seen["devices"]) == 4 and all(d["round"] > 0 for d in seen["devices"].values()):
                break
            time.sleep(0.2)
        assert seen["lab"]["name"] == "att" and seen["lab"]["mode"] == "live"
        assert sorted(d["state"] for d in seen["devices"].values()) == ["online"] * 4, seen["devices"]
        assert proc.wait(300) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(OSError):  # the page went with the lab
        state(url)


def test_broker_serves_the_dashboard_of_its_published_lab(tmp_path):
    config = write_yaml(tmp_path / "lab.yaml", tiny_raw(name="brk"))
    proc, lines = start("broker", str(config), "--port", "0", "--dir", str(tmp_path / "b"), "--dashboard", "0",
                        cwd=tmp_path)
    try:
        url = dashboard_url(proc, lines)
        deadline = time.monotonic() + 30
        while not state(url)["devices"] and time.monotonic() < deadline:
            time.sleep(0.1)
        shown = state(url)
        assert shown["lab"]["name"] == "brk" and shown["topology"]["edges"] == [[0, 1], [0, 3], [1, 2], [2, 3]]
        assert [d["state"] for d in shown["devices"].values()] == ["unknown"] * 4  # no device has joined
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0, "".join(lines)
