"""The dashboard in a real browser: a live 4-agent lab over mosquitto, then a finished run.

A real mosquitto, four real ``join`` processes (small-cnn), ``edge-mcepl dashboard --bundle
observer.yaml`` as a user starts it, and headless Chromium (Debian's, through chromedriver) on
the page: the table lists four online agents, the round counter advances, the accuracy plot gains
points, a killed ``join`` turns offline within seconds (its last will) with a drop event, the
totals a device shows are its own metrics rows', and the page logs no error. Then the page of a
finished run states the accuracy ``summary.txt`` states. Screenshots go to ``test-artifacts/``
(git-ignored; ``EDGE_MCEPL_ARTIFACTS`` moves them).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from benchmarks.browser import console_errors, headless_chromium
from edge_mcepl.comm.broker.launcher import start_broker
from edge_mcepl.devicelab.envelope import LabSettings

from conftest import tiny_lab_config
from labsupport import ROOT, publish_lab, rows, simulate, start_join, stop_all, tiny_raw, wait_until

pytestmark = pytest.mark.mosquitto
ARTIFACTS = Path(os.environ.get("EDGE_MCEPL_ARTIFACTS", ROOT / "test-artifacts"))
KILLED = 2


def start_dashboard(*args: str, log: Path) -> tuple[subprocess.Popen, str]:
    """``edge-mcepl dashboard ARGS --port 0`` and the URL it prints."""
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge_mcepl.cli", "dashboard", *args, "--port", "0"],
                            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out.close()
    wait_until(lambda: "open http" in log.read_text() or proc.poll() is not None, 60, "the dashboard's URL")
    found = re.findall(r"open (http://\S+)", log.read_text())
    assert found, f"the dashboard exited: {log.read_text()}"
    return proc, found[0]


def table(driver) -> dict[int, dict]:
    """The device table as the page shows it: agent → state, round and accuracy cell."""
    out = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "#devices tr[data-agent]"):
        out[int(row.get_attribute("data-agent"))] = {
            "state": row.get_attribute("data-state"), "round": row.find_element(By.CSS_SELECTOR, ".round").text,
            "accuracy": row.find_element(By.CSS_SELECTOR, ".accuracy").text}
    return out


def counter(driver) -> int:
    return int(driver.find_element(By.ID, "round-counter").text.split("/")[0].strip() or 0)


def points(driver, chart: str) -> int:
    return int(driver.find_element(By.ID, chart).get_attribute("data-points") or 0)


def test_a_live_lab_and_a_finished_run_in_a_real_browser(tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    raw = tiny_raw(name="dash", rounds=100_000, eval_every=3,
                   **{"data.synthetic_train_per_class": 150, "data.synthetic_test_per_class": 20})
    handle = start_broker(tmp_path / "broker", "dash", 4, kind="mosquitto", port=0, sys_interval=1)
    procs, dashboards, driver = [], [], None
    try:
        publish_lab(handle, raw, LabSettings(round_deadline_s=3.0, max_staleness=1, start_timeout_s=120))
        states = [tmp_path / f"agent_{i}" for i in range(4)]
        procs = [start_join(handle.bundle(i), states[i]) for i in range(4)]
        dash, url = start_dashboard("--bundle", str(handle.bundle(None)), log=tmp_path / "dashboard.log")
        dashboards.append(dash)
        driver = headless_chromium()
        driver.get(url)
        wait_until(lambda: [d["state"] for d in table(driver).values()] == ["online"] * 4, 120,
                   "4 online agents on the page", procs)
        first_round, first_points = counter(driver), points(driver, "accuracy-chart")
        wait_until(lambda: counter(driver) >= first_round + 3, 60, "the round counter to advance", procs)
        wait_until(lambda: points(driver, "accuracy-chart") > first_points, 60, "new accuracy points", procs)
        assert re.match(r"^\d\.\d{4}", table(driver)[0]["accuracy"])
        driver.save_screenshot(str(ARTIFACTS / "dashboard-live.png"))

        procs[KILLED].kill()
        killed_at = time.monotonic()
        wait_until(lambda: table(driver)[KILLED]["state"] == "offline", 10, f"agent {KILLED} shown offline")
        print(f"agent {KILLED} shown offline {time.monotonic() - killed_at:.2f} s after kill -9")
        events = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#events li[data-kind='drop']")]
        assert any(f"agent {KILLED} went offline" in text for text in events), events
        assert driver.find_element(By.CSS_SELECTOR, f"#topology circle[data-agent='{KILLED}']").get_attribute(
            "class").split() == ["state-offline"]
        others = [i for i in range(4) if i != KILLED]
        assert all(table(driver)[i]["state"] == "online" for i in others)
        shown = int(table(driver)[KILLED]["round"])
        mine = [r for r in rows(states[KILLED]) if r["round"] <= shown]
        state = driver.execute_script("return fetch('api/state').then(r => r.json())")
        device = state["devices"][str(KILLED)]
        assert device["bytes_sent"] == sum(r["bytes_sent"] for r in mine) > 0  # the status's totals are the rows'
        assert device["bytes_received"] == sum(r["bytes_received"] for r in mine)
        driver.save_screenshot(str(ARTIFACTS / "dashboard-offline.png"))
        assert console_errors(driver) == []

        stop_all(procs)
        run_dir = simulate(tiny_lab_config(rounds=4, eval_every=2), tmp_path)
        finished, url = start_dashboard(str(run_dir), log=tmp_path / "dashboard-run.log")
        dashboards.append(finished)
        driver.get(url)
        wait_until(lambda: len(table(driver)) == 4 and all(d["state"] == "done" for d in table(driver).values()),
                   30, "the finished run's 4 agents")
        summary = (run_dir / "summary.txt").read_text()
        stated = re.search(r"round (\d+): mean personalized accuracy (\d\.\d{4})", summary)
        mean = driver.find_element(By.ID, "mean-accuracy").text
        assert mean.split()[0] == stated.group(2) and f"round {stated.group(1)}" in mean
        per_agent = {int(line.split()[0]): line.split()[4] for line in summary.splitlines()[1:-1]}
        assert {i: d["accuracy"].split()[0] for i, d in table(driver).items()} == per_agent
        driver.save_screenshot(str(ARTIFACTS / "dashboard-finished-run.png"))
        assert console_errors(driver) == []
    finally:
        if driver is not None:
            driver.quit()
        stop_all(procs + dashboards)
        handle.stop()
