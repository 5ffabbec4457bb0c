"""A large device lab on one machine: messages per second, broker CPU and memory per agent → docs/lab-scale.md.

Runs real ``edge-mcepl lab`` labs (one mosquitto, join processes hosting several agents each:
``--agents-per-process``) of small-cnn on MNIST over a k-regular graph (the scale benchmark's
labs, benchmarks/scale.py), and while they train samples, every half second:

- the broker's counters on ``$SYS`` (MQTT packets received and sent — every PUBLISH, PUBACK,
  SUBSCRIBE, PINGREQ… — and bytes received and sent), read with the lab's admin account;
- mosquitto's CPU time and every join process's resident memory (psutil);
- each agent's retained status (its completed round).

The **steady window** runs from the moment every agent has completed round 1 (start-up, data
loading and the first keyframes behind) to the moment every agent has completed the last round
but one (the last round evaluates every agent, which is not messaging);
rates are Δcounter / Δtime over the ``$SYS`` samples inside it, broker CPU is Δ(user + system) / Δtime
(1.0 = one core busy). The lab's own messages per second come from the agents' metrics rows of
those rounds: one mask and one status published per agent and round (plus any mask sent again),
and Σ ``neighbours_heard`` mask deliveries. (mosquitto's ``publish/messages`` counters count QoS 1
and 2 only, so they are not used.) Memory is the peak resident set of each join process, summed; per agent =
that sum / agents. Several labs (``--labs AGENTS:K,...``) run one after another in one invocation,
so their ratios are same-run ratios.

Usage::

    .venv/bin/python benchmarks/lab_scale.py --labs 100:25:6,100:50:6,20:1:20,20:20:20

The whole lab time-shares this machine's two cores with the broker: a round's wall time here is
the sum of 100 agents' compute, and the broker's share of the CPU is what it costs next to them.
Each process gets the lab's default thread count, cores ÷ processes (at least 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale import lab_config  # noqa: E402
from edge_mcepl.comm.broker.credentials import ADMIN_USER, SECRETS_FILE, LabCredentials  # noqa: E402
from edge_mcepl.comm.client import BrokerAddress, MqttConnection, MqttOptions  # noqa: E402
from edge_mcepl.comm.topics import status_topic  # noqa: E402

SYS_TOPICS = {"packets_received": "$SYS/broker/messages/received",
              "packets_sent": "$SYS/broker/messages/sent",
              "bytes_received": "$SYS/broker/bytes/received", "bytes_sent": "$SYS/broker/bytes/sent"}
MB = 1 << 20


@dataclass
class Sample:
    """One observation of a running lab."""

    time: float
    min_round: int  # the slowest agent's completed round (-1 until every agent has said)
    broker_cpu: float  # mosquitto's user + system seconds so far
    join_rss: dict[int, int]  # join pid → resident bytes now


@dataclass
class LabResult:
    agents: int
    agents_per_process: int
    processes: int
    rounds: int
    window_s: float
    round_s: float
    masks_per_s: float  # mask messages published (one per agent and round, plus any sent again)
    deliveries_per_s: float  # masks delivered to neighbours (Σ neighbours_heard)
    statuses_per_s: float  # status messages published (one per agent and round)
    packets_in_per_s: float
    packets_out_per_s: float
    bytes_in_per_s: float
    bytes_out_per_s: float
    broker_cpu: float  # cores
    peak_rss_mb: float  # Σ over join processes of each one's peak
    per_agent_mb: float
    mean_degree: float
    run_dir: str
    sys_samples: int = 0
    notes: list[str] = field(default_factory=list)


def run_one(agents: int, k: int, rounds: int, data_dir: str, out: Path) -> LabResult:
    """One lab of ``agents`` agents, ``k`` per join process, observed until it ends."""
    raw = lab_config("small-cnn", "k-regular", agents, rounds, data_dir)
    raw["name"] = f"labscale-{agents}-{k}"
    del raw["threads"]  # the lab's default: cores ÷ processes, so one process of 20 agents may use both cores
    config_path = out.with_suffix(".yaml")
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    log = open(out.with_suffix(".log"), "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge_mcepl.cli", "lab", str(config_path), "--out", str(out),
                             "--broker-kind", "mosquitto", "--agents-per-process", str(k), "--round-deadline", "3600",
                             "--start-timeout", "3600"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        return _observe(proc, raw, agents, k, rounds, out)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def _observe(proc: subprocess.Popen, raw: dict[str, Any], agents: int, k: int, rounds: int, out: Path) -> LabResult:
    secrets_path = out / "broker" / SECRETS_FILE
    deadline = time.monotonic() + 300
    while not (out / "lab.json").is_file() or not secrets_path.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the lab did not start; see {out.with_suffix('.log')}")
        time.sleep(0.2)
    lab = json.loads((out / "lab.json").read_text())
    creds = LabCredentials.load(secrets_path)
    sys_values: dict[str, list[tuple[float, int]]] = {name: [] for name in SYS_TOPICS}
    by_topic = {topic: name for name, topic in SYS_TOPICS.items()}
    rounds_of: dict[int, int] = {}
    lock = threading.Lock()

    def on_sys(topic: str, payload: bytes) -> None:
        with lock:
            sys_values[by_topic[topic]].append((time.time(), int(payload)))

    def on_status(_topic: str, payload: bytes) -> None:
        try:
            st = json.loads(payload)
            if st.get("run_id") == lab["run_id"]:
                with lock:
                    rounds_of[int(st["agent"])] = int(st.get("round", 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass

    admin = MqttConnection(BrokerAddress.parse(lab["broker_url"]), MqttOptions(ADMIN_USER, creds.admin_password),
                           f"bench-labscale-{os.getpid()}", name="bench")
    admin.on("$SYS/broker/#", on_sys)
    admin.on(status_topic(raw["name"], "+"), on_status)
    admin.connect()
    admin.subscribe([*SYS_TOPICS.values(), status_topic(raw["name"], "+")])
    samples: list[Sample] = []
    peak: dict[int, int] = {}
    lab_process = psutil.Process(proc.pid)
    while proc.poll() is None:
        with lock:
            low = min(rounds_of.values()) if len(rounds_of) == agents else -1
        samples.append(_sample(lab_process, low, peak))
        if low >= rounds - 1:
            break
        time.sleep(0.5)
    admin.close()  # before the lab stops its broker
    if proc.wait(1800) != 0:
        raise SystemExit(f"the lab exited with {proc.returncode}; see {out.with_suffix('.log')}")
    start = next(s for s in samples if s.min_round >= 1)
    end = next(s for s in samples if s.min_round >= rounds - 1)

    def rate(name: str) -> float:
        inside = [(t, v) for t, v in sys_values[name] if start.time <= t <= end.time]
        if len(inside) < 2:
            raise SystemExit(f"too few $SYS samples of {name} in the steady window; run more rounds")
        (t0, v0), (t1, v1) = inside[0], inside[-1]
        return (v1 - v0) / (t1 - t0)

    window = end.time - start.time
    peak_sum = sum(peak.values())
    degree = raw["topology"]["k"]
    steady = [r for r in _rows(out) if 2 <= r["round"] <= rounds - 1]
    if len(steady) != agents * (rounds - 2):
        raise SystemExit(f"{out}: {len(steady)} metrics rows of rounds 2..{rounds - 1}, expected "
                         f"{agents * (rounds - 2)}")
    return LabResult(agents=agents, agents_per_process=k, processes=len(peak), rounds=rounds, window_s=window,
                     round_s=window / (rounds - 2), masks_per_s=sum(1 + r["resent"] for r in steady) / window,
                     deliveries_per_s=sum(r["neighbours_heard"] for r in steady) / window,
                     statuses_per_s=len(steady) / window, packets_in_per_s=rate("packets_received"),
                     packets_out_per_s=rate("packets_sent"), bytes_in_per_s=rate("bytes_received"),
                     bytes_out_per_s=rate("bytes_sent"), broker_cpu=(end.broker_cpu - start.broker_cpu) / window,
                     peak_rss_mb=peak_sum / MB, per_agent_mb=peak_sum / MB / agents, mean_degree=degree,
                     run_dir=str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out),
                     sys_samples=len(sys_values["packets_received"]))


def _sample(lab_process: psutil.Process, low: int, peak: dict[int, int]) -> Sample:
    """mosquitto's CPU time and the join processes' memory now (``peak`` keeps each one's largest)."""
    children = lab_process.children(recursive=True)
    broker = [c for c in children if c.name().startswith("mosquitto")]
    rss = {}
    for c in children:
        if "join" in _cmdline(c):
            try:
                rss[c.pid] = c.memory_info().rss
            except psutil.Error:
                pass
    for pid, value in rss.items():
        peak[pid] = max(peak.get(pid, 0), value)
    try:
        cpu = sum(broker[0].cpu_times()[:2]) if broker else float("nan")
    except psutil.Error:
        cpu = float("nan")
    return Sample(time.time(), low, cpu, rss)


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def render(results: list[LabResult], command: str) -> str:
    lines = [
        "# A large device lab on one machine: messages per second, broker CPU, memory per agent",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}). Each lab: `edge-mcepl lab` with one mosquitto on 127.0.0.1 and "
        "`--agents-per-process K` (join processes hosting K agents each, `join --agent-id`), small-cnn on MNIST "
        "(3 classes per agent), k-regular graph (degree 4), the `reference` preset with the delta mask codec, "
        "the lab's default torch threads (cores ÷ processes, at least 1), no evaluation until the last round. "
        "Rates are over the steady window "
        "(every agent past round 1 → every agent past the last round but one), from mosquitto's `$SYS` "
        "counters; broker CPU in cores (1.0 = one core busy) from psutil; memory = Σ peak resident set of the "
        "join processes.",
        "",
        "| agents | agents per process | processes | rounds | round (s) | masks published / s | mask deliveries / s | "
        "statuses / s | MQTT packets in / out per s | bytes in / out per s | broker CPU (cores) | "
        "join memory (MB) | per agent (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.agents} | {r.agents_per_process} | {r.processes} | {r.rounds} | {r.round_s:.2f} | "
                     f"{r.masks_per_s:,.1f} | {r.deliveries_per_s:,.1f} | {r.statuses_per_s:,.1f} | "
                     f"{r.packets_in_per_s:,.0f} / {r.packets_out_per_s:,.0f} | "
                     f"{r.bytes_in_per_s:,.0f} / {r.bytes_out_per_s:,.0f} | {r.broker_cpu:.3f} | "
                     f"{r.peak_rss_mb:,.0f} | {r.per_agent_mb:.1f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labs", default="100:25:6,100:50:6,20:1:20,20:20:20",
                    help="AGENTS:AGENTS_PER_PROCESS:ROUNDS,... run one after another (default %(default)s); a "
                         "small lab needs more rounds for a steady window of several $SYS samples")
    ap.add_argument("--data-dir", default=str((ROOT / ".." / "shared" / "data").resolve()))
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / f"lab-scale-{time.strftime('%Y%m%d-%H%M%S')}"))
    ap.add_argument("--results", default=str(ROOT / "results" / "lab-scale" / "lab-scale.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "lab-scale.md"))
    ap.add_argument("--from-results", type=Path, help="write the doc from this results file instead of running labs")
    ap.add_argument("--notes", type=Path, help="a markdown file appended under the table (what the numbers mean)")
    args = ap.parse_args()
    if args.from_results:
        results = [LabResult(**json.loads(line)) for line in args.from_results.read_text().splitlines() if line]
        text = render(results, "benchmarks/lab_scale.py " + " ".join(sys.argv[1:]))
        Path(args.out).write_text(text + ("\n" + args.notes.read_text() if args.notes else ""))
        print(text)
        return 0
    labs = [tuple(int(x) for x in spec.split(":")) for spec in args.labs.split(",")]
    if any(len(lab) != 3 or lab[2] < 4 for lab in labs):
        raise SystemExit("--labs: AGENTS:AGENTS_PER_PROCESS:ROUNDS, at least 4 rounds each (the steady window is "
                         "rounds 2 to the last but one)")
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results = []
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    for agents, k, rounds in labs:
        print(f"lab: {agents} agents, {k} per process, {rounds} rounds", flush=True)
        result = run_one(agents, k, rounds, args.data_dir, run_dir / f"lab-{agents}-{k}")
        print(json.dumps(asdict(result)), flush=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(asdict(result)) + "\n")
        results.append(result)
    text = render(results, "benchmarks/lab_scale.py " + " ".join(sys.argv[1:]))
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
