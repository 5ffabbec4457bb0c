"""The dashboard's two targets, measured → docs/dashboard-benchmark.md.

1. **Update latency** (target ≤ 1 s on loopback): a status published → shown on the page. A probe
   publishes agent 0's retained status with its own account (as ``join`` does, on a real mosquitto,
   with the lab's signed config) with a new round each time, just after reading the wall clock;
   the page sets ``data-rendered-at`` (``Date.now()``) on the row it re-renders, read back through
   Selenium from headless Chromium. Same machine, same clock: rendered − published is the whole
   path (broker → dashboard → SSE → the page's next frame). Measured once on an idle machine and
   once while the 20-agent lab of part 2 trains on the same two cores.
2. **Broker traffic** (target ≤ 1 %): the 20-agent paper lab (``examples/paper.yaml``, as in
   docs/lab.md) run twice for the same rounds — without and with a dashboard attached as the
   observer — and mosquitto's ``$SYS/broker/bytes`` totals compared. The dashboard is connected
   after the first count and gone before the last, so all of its traffic (connect, the retained
   config, one status per agent and round, the ``$SYS`` counters, keep-alives) is inside.

Usage::

    .venv/bin/python benchmarks/dashboard.py [--samples 40] [--rounds 6] [--skip-traffic]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.browser import headless_chromium  # noqa: E402
from benchmarks.lab_messaging import LabRun, pct, run_lab  # noqa: E402
from edge_mcepl.comm.broker.bundles import load_bundle  # noqa: E402
from edge_mcepl.comm.broker.launcher import BrokerHandle, start_broker  # noqa: E402
from edge_mcepl.comm.client import BrokerAddress, MqttConnection, MqttOptions, status_payload  # noqa: E402
from edge_mcepl.comm.topics import status_topic  # noqa: E402
from edge_mcepl.config import config_from_dict, load_config  # noqa: E402
from edge_mcepl.dashboard.server import DashboardServer  # noqa: E402
from edge_mcepl.dashboard.sources import MqttSource  # noqa: E402
from edge_mcepl.devicelab.envelope import LabSettings, explicit_keys, make_envelope, publish_envelope  # noqa: E402
from edge_mcepl.devicelab.plan import lab_roster  # noqa: E402
from edge_mcepl.devicelab.signature import sign_envelope  # noqa: E402

PROBE_LAB = {"name": "latency", "seed": 1, "agents": 2, "rounds": 10**6, "model": "small-cnn",
             "data": {"dataset": "synthetic"}, "topology": {"kind": "ring"}}
ROW = "document.querySelector('#devices tr[data-agent=\"0\"]')"


@contextlib.contextmanager
def dashboard(handle: BrokerHandle) -> Iterator[DashboardServer]:
    """A dashboard watching ``handle``'s lab as its observer, served on loopback (as ``broker --dashboard``)."""
    source = MqttSource(load_bundle(handle.bundle(None)), handle.url)
    server = DashboardServer(source.view, "127.0.0.1", 0).start()
    source.start()
    try:
        yield server
    finally:
        server.stop()
        source.stop()


def measure_latency(samples: int, gap_s: float) -> list[float]:
    """Seconds from a status publish to the page showing it, ``samples`` times."""
    with tempfile.TemporaryDirectory() as tmp:
        config = config_from_dict(PROBE_LAB)
        handle = start_broker(Path(tmp) / "broker", config.name, config.agents, kind="mosquitto", port=0)
        admin = MqttConnection(BrokerAddress.parse(handle.url), MqttOptions("lab-admin",
                                                                            handle.credentials.admin_password),
                               "latency-admin", name="admin").connect()
        envelope = sign_envelope(make_envelope(config, [], LabSettings()),
                                 lab_roster(config, [], {}, handle.credentials), handle.credentials.lab_key)
        publish_envelope(admin, envelope)
        admin.close()
        agent = load_bundle(handle.bundle(0))
        probe = MqttConnection(BrokerAddress.parse(handle.url), MqttOptions(agent.username, agent.password),
                               "latency-probe", name="probe").connect()
        driver = headless_chromium()
        try:
            with dashboard(handle) as server:
                driver.get(server.url)
                deadline = time.time() + 30
                while driver.execute_script(f"return {ROW} !== null") is not True:
                    if time.time() > deadline:
                        raise RuntimeError("the page never showed agent 0")
                    time.sleep(0.05)
                out = []
                for r in range(1, samples + 1):
                    payload = status_payload("online", 0, run_id=envelope["run_id"], round=r, bytes_sent=r,
                                             bytes_received=r, rejected={}, round_seconds=0.1)
                    published = time.time()
                    probe.publish(status_topic(config.name, 0), payload, retain=True)
                    while True:
                        shown, at = driver.execute_script(
                            f"const r = {ROW}; return [r.querySelector('.round').textContent, r.dataset.renderedAt]")
                        if shown == str(r):
                            out.append(int(at) / 1000 - published)
                            break
                        if time.time() - published > 10:
                            raise RuntimeError(f"round {r} never shown")
                        time.sleep(0.005)
                    time.sleep(gap_s)
                return out
        finally:
            driver.quit()
            probe.close()
            handle.stop()


def latency_line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"| {name} | {len(ms)} | {statistics.median(ms):.0f} | {pct(ms, 0.9):.0f} | {max(ms):.0f} | "
            f"{'met' if max(ms) <= 1000 else 'NOT met'} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=6, help="rounds of each 20-agent lab")
    ap.add_argument("--config", default=str(ROOT / "examples" / "paper.yaml"))
    ap.add_argument("--data-dir", default=str((ROOT / ".." / "shared" / "data").resolve()))
    ap.add_argument("--run-dir", help="default runs/dashboard-traffic-TIMESTAMP (and …-dashboard)")
    ap.add_argument("--skip-traffic", action="store_true", help="latency only (no 20-agent labs)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "dashboard-benchmark.md"))
    args = ap.parse_args()

    print("latency, idle machine ...", flush=True)
    idle = measure_latency(args.samples, 0.2)
    loaded: list[float] = []
    labs: list[LabRun] = []
    if not args.skip_traffic:
        overrides = {"rounds": args.rounds, "eval_every": 10**6, "threads": 1, "data.data_dir": args.data_dir}
        config = load_config(args.config, overrides)
        explicit = explicit_keys(args.config, overrides)
        settings = LabSettings(round_deadline_s=3600, max_staleness=0, start_timeout_s=3600)
        base = Path(args.run_dir or ROOT / "runs" / f"dashboard-traffic-{time.strftime('%Y%m%d-%H%M%S')}")
        print(f"20-agent lab without a dashboard → {base}", flush=True)
        labs.append(run_lab(config, explicit, settings, base, args.data_dir))
        print(f"20-agent lab with a dashboard → {base}-dashboard; latency under its load", flush=True)
        result: list[LabRun] = []
        lab = threading.Thread(target=lambda: result.append(run_lab(
            config, explicit, settings, base.with_name(f"{base.name}-dashboard"), args.data_dir, observe=dashboard)))
        lab.start()
        time.sleep(60)  # the joins are loading data and training: the two cores are busy
        loaded = measure_latency(args.samples, 0.5)
        lab.join()
        labs.append(result[0])

    lines = [
        "# Dashboard: update latency and broker traffic",
        "",
        f"Generated by `benchmarks/dashboard.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')} "
        f"({platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}); headless "
        "Chromium (Debian) through Selenium; mosquitto on loopback. How it is measured: the docstring of "
        "benchmarks/dashboard.py.",
        "",
        "## Update latency: status published → shown on the page (target ≤ 1 s)",
        "",
        "| machine | samples | median ms | p90 ms | max ms | target |",
        "|---|---:|---:|---:|---:|---|",
        latency_line("idle", idle),
        *([latency_line("while the 20-agent lab below trains (20 joins on 2 cores)", loaded)] if loaded else []),
        "",
    ]
    if labs:
        without, with_dashboard = labs
        extra = with_dashboard.mqtt_total - without.mqtt_total
        rounds = max(r["round"] for r in without.rows)
        payload: dict[int, float] = {}  # mask payload through the broker per round: in once, out once per neighbour
        for r in without.rows:
            payload[r["round"]] = payload.get(r["round"], 0.0) + r["bytes_received"] + r["bytes_sent"] / r["degree"]
        steady = statistics.mean(payload[t] for t in payload if t > 1)
        lines += [
            f"## Broker traffic: the 20-agent paper lab, {rounds} rounds, with and without a dashboard (target ≤ 1 %)",
            "",
            "| lab | all MQTT bytes through mosquitto (`$SYS/broker/bytes`, both directions) | per round |",
            "|---|---:|---:|",
            f"| without a dashboard | {without.mqtt_total:,} | {without.mqtt_total / rounds:,.0f} |",
            f"| with a dashboard (observer) | {with_dashboard.mqtt_total:,} | "
            f"{with_dashboard.mqtt_total / rounds:,.0f} |",
            "",
            f"**The dashboard adds {extra:,} bytes = {extra / without.mqtt_total * 100:.3f} %** of the lab's broker "
            f"traffic ({extra / rounds:,.0f} bytes per round; target ≤ 1 %: "
            f"{'met' if extra <= 0.01 * without.mqtt_total else 'NOT met'}). The masks of both labs are the same "
            "bytes (the lab is deterministic), so the difference is the dashboard's connection, plus the labs' "
            "own timing-dependent keep-alives.",
            "",
            f"Round 1's stand-alone masks dominate a short run ({payload[1]:,.0f} bytes of mask payload); after it "
            f"the delta-coded masks move {steady:,.0f} bytes of payload per round (mean of rounds 2–{rounds}), "
            f"against which the dashboard's {extra / rounds:,.0f} bytes per round are "
            f"**{extra / rounds / steady * 100:.2f} %** (framing excluded from the denominator: an upper bound). "
            "Per round the dashboard receives one status per agent (~420 bytes each, at QoS 0: no "
            "acknowledgements) and the broker's `$SYS` counters (three small messages per `sys_interval`, "
            "1 s in this benchmark).",
            "",
        ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
