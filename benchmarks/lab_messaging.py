"""Messaging cost of a device lab: the 20-agent paper setting over loopback mosquitto → docs/lab.md.

Runs ``examples/paper.yaml`` (20 agents, the reference graph, AlexNet-CIFAR, CIFAR-10 shards) as a
real multi-process lab: a generated-config mosquitto on 127.0.0.1 and 20 ``edge-mcepl join``
processes (one torch thread each), for a few rounds, with a round deadline long enough that no
mask is ever missed. Then, from the agents' own per-round metrics:

- **messaging time** of agent i in round t = max over its neighbours j of
  ``arrival_i(j, t) − publish_j(t)``: the transit time of the slowest neighbour *message*, both
  stamps taken with the shared wall clock of this machine (publish: just before the MQTT publish
  call; arrival: in the receiver's paho network thread, after the decoder accepted the message).
  It excludes waiting for a slower neighbour to finish computing; the ``gather wait`` column
  (i's publish → last neighbour mask in) includes it and is shown for comparison.
- **compute time** = local step + encode (``train_seconds``) + decode/aggregate/consensus
  (``aggregate_seconds``); **round time** = the agent's whole round minus evaluation.
- **bytes**: mask payload bytes delivered to agents per round (Σ ``bytes_received``, counted by
  the receivers) against the senders' count Σᵢ |message| × |Nᵢ| (``bytes_sent``, what the simulator
  counts); plus all MQTT traffic through the broker (mosquitto's ``$SYS/broker/bytes/{received,sent}``),
  framing, acks, status and keyframe requests included.
- ``--compare-codec packbits``: the same lab again with that mask codec, bytes side by side.

Usage::

    .venv/bin/python benchmarks/lab_messaging.py [--rounds 4] [--codec delta] [--compare-codec packbits]

20 processes on a 2-core machine time-share the CPU: rounds are slow and the receivers' network
threads wait for CPU too, so these messaging times are an upper bound for dedicated devices.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_mcepl.comm.broker.credentials import ADMIN_USER  # noqa: E402
from edge_mcepl.comm.broker.launcher import BrokerHandle, start_broker  # noqa: E402
from edge_mcepl.comm.client import BrokerAddress, MqttConnection, MqttOptions  # noqa: E402
from edge_mcepl.config import LabConfig, load_config  # noqa: E402
from edge_mcepl.devicelab.envelope import (  # noqa: E402
    LabSettings,
    explicit_keys,
    make_envelope,
    publish_envelope,
)
from edge_mcepl.devicelab.limits import broker_limits  # noqa: E402
from edge_mcepl.devicelab.plan import lab_roster  # noqa: E402
from edge_mcepl.devicelab.signature import sign_envelope  # noqa: E402
from edge_mcepl.nn.zoo import build_model  # noqa: E402
from edge_mcepl.run_dir import LOAD_LOCK, agent_dir, merge_lab_run  # noqa: E402
from edge_mcepl.simulator import build_topology_for  # noqa: E402
from edge_mcepl.wire.masks import MASK_CODECS  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


@dataclass
class LabRun:
    """One lab run of the benchmark: its rows and what the broker counted."""

    codec: str
    run_dir: Path
    rows: list[dict]
    mqtt_total: int
    wall: float
    broker: str

    def per_round(self, key: str) -> dict[int, int]:
        return {t: sum(r[key] for r in self.rows if r["round"] == t) for t in sorted({r["round"] for r in self.rows})}

    def payload_total(self, degrees: list[int]) -> float:
        """Mask payload crossing the broker: each message in once (bytes_sent ÷ degree), out once per neighbour."""
        return sum(r["bytes_received"] + r["bytes_sent"] / degrees[r["agent"]] for r in self.rows)


def run_lab(config: LabConfig, explicit: list[str], settings: LabSettings, run_dir: Path, data_dir: str,
            observe: Callable[[BrokerHandle], AbstractContextManager[object]] | None = None) -> LabRun:
    """A real lab of ``config`` (one mosquitto, one join process per agent); rows merged, $SYS bytes read.

    ``observe(handle)``, when given, is entered after the first byte count and left before the last
    (benchmarks/dashboard.py attaches a dashboard with it: its whole connection is counted).
    """
    run_dir.mkdir(parents=True, exist_ok=False)
    envelope = make_envelope(config, explicit, settings)
    limits = broker_limits(config, envelope, settings.max_staleness)
    handle = start_broker(run_dir / "broker", config.name, config.agents, kind="mosquitto", port=0, sys_interval=1,
                          message_limit=limits.message_bytes, queue_messages=limits.queue_messages,
                          queue_bytes=limits.queue_bytes)
    print(f"{handle.description} at {handle.url}; run dir {run_dir}", flush=True)
    sys_bytes: dict[str, tuple[float, int]] = {}
    admin = MqttConnection(BrokerAddress.parse(handle.url), MqttOptions(ADMIN_USER, handle.credentials.admin_password),
                           "bench-admin", name="bench").connect()
    admin.on("$SYS/broker/bytes/#", lambda topic, payload: sys_bytes.__setitem__(topic.rsplit("/", 1)[1],
                                                                                 (time.time(), int(payload))))
    admin.subscribe(["$SYS/broker/bytes/received", "$SYS/broker/bytes/sent"])
    publish_envelope(admin, sign_envelope(envelope, lab_roster(config, explicit, {}, handle.credentials),
                                          handle.credentials.lab_key))

    def fresh_sys(after: float) -> dict[str, int]:
        deadline = time.time() + 30
        while time.time() < deadline:
            got = dict(sys_bytes)
            if len(got) == 2 and all(ts > after for ts, _ in got.values()):
                return {k: v for k, (_, v) in got.items()}
            time.sleep(0.2)
        raise RuntimeError("no $SYS byte counters from mosquitto")

    before = fresh_sys(time.time())
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = []
    started = time.time()
    with observe(handle) if observe is not None else contextlib.nullcontext():
        for i in range(config.agents):
            state = agent_dir(run_dir, i)
            state.mkdir(parents=True)
            log = open(state / "join.log", "w")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "edge_mcepl.cli", "join", "--bundle", str(handle.bundle(i)),
                 "--state-dir", str(state), "--threads", "1", "--data-dir", data_dir,
                 "--load-lock", str(run_dir / LOAD_LOCK)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT))
            log.close()
        codes = [p.wait() for p in procs]
    ended = time.time()
    after = fresh_sys(ended + 1.0)
    admin.close()
    handle.stop()
    if any(codes):
        raise SystemExit(f"join exit codes {codes}; see {run_dir}/agents/*/join.log")
    merge_lab_run(run_dir, config)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    mqtt_total = (after["sent"] - before["sent"]) + (after["received"] - before["received"])
    return LabRun(config.algorithm.mask_codec, run_dir, rows, mqtt_total, ended - started, handle.description)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "examples" / "paper.yaml"))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--codec", choices=list(MASK_CODECS), help="algorithm.mask_codec (default: the config's)")
    ap.add_argument("--compare-codec", choices=list(MASK_CODECS), help="run the lab again with this mask codec")
    ap.add_argument("--data-dir", default=str((ROOT / ".." / "shared" / "data").resolve()))
    ap.add_argument("--run-dir", help="default runs/lab-messaging-TIMESTAMP (the comparison lab: RUN_DIR-CODEC)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "lab.md"))
    ap.add_argument("--simulator-run", help="an `edge-mcepl simulate` run of the same config and rounds (with "
                                            "--threads 1): check the lab's final masks are bit-identical to it")
    args = ap.parse_args()

    overrides = {"rounds": args.rounds, "eval_every": 10**6, "threads": 1, "data.data_dir": args.data_dir}
    if args.codec:
        overrides["algorithm.mask_codec"] = args.codec
    config = load_config(args.config, overrides)
    run_dir = Path(args.run_dir or ROOT / "runs" / f"lab-messaging-{time.strftime('%Y%m%d-%H%M%S')}")
    settings = LabSettings(round_deadline_s=3600, max_staleness=0, start_timeout_s=3600)
    explicit = explicit_keys(args.config, overrides)
    lab = run_lab(config, explicit, settings, run_dir, args.data_dir)
    labs = [lab]
    if args.compare_codec:
        other = config.replace(algorithm=config.algorithm.model_copy(update={"mask_codec": args.compare_codec}))
        labs.append(run_lab(other, sorted({*explicit, "algorithm.mask_codec"}), settings,
                            run_dir.with_name(f"{run_dir.name}-{args.compare_codec}"), args.data_dir))
    rows = lab.rows

    published = {(r["agent"], r["round"]): r["published_at"] for r in rows}
    per = []  # one entry per (agent, round)
    for r in rows:
        latencies = [arr - published[(int(j), r["round"])] for j, arr in r["arrivals"].items()]
        round_time = r["round_seconds"] - r["eval_seconds"]
        per.append({"round": r["round"], "msg": max(latencies), "wait": r["gather_seconds"],
                    "compute": r["train_seconds"] + r["aggregate_seconds"], "round_time": round_time,
                    "share": max(latencies) / round_time, "latencies": latencies})
    all_lat = [x for p in per for x in p["latencies"]]

    topology = build_topology_for(config)
    shapes = build_model(config.model, 10).layer_shapes()
    weights = sum(math.prod(s) for s in shapes)
    degrees = [len(topology.neighbours(i)) for i in range(config.agents)]

    def row3(name, key):
        values = [p[key] for p in per]
        return f"| {name} | {statistics.median(values):.3f} | {pct(values, 0.9):.3f} | {max(values):.3f} |"

    share_total = sum(p["msg"] for p in per) / sum(p["round_time"] for p in per)
    identical = None
    if args.simulator_run:
        sim_dir = Path(args.simulator_run)
        sim_state = json.loads((sim_dir / "final" / "state.json").read_text())
        if sim_state["rounds"] != config.rounds:
            raise SystemExit(f"--simulator-run {sim_dir}: has {sim_state['rounds']} rounds, "
                             f"the lab ran {config.rounds}")
        identical = sum((sim_dir / "final" / a["mask_file"]).read_bytes()
                        == (run_dir / "final" / a["mask_file"]).read_bytes() for a in sim_state["agents"])
    shown_run_dir = run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir
    config_path = Path(args.config)
    shown_config = config_path.relative_to(ROOT) if config_path.resolve().is_relative_to(ROOT) else args.config
    lines = [
        "# Device lab: messaging cost (20-agent paper setting over loopback mosquitto)",
        "",
        f"Generated by `benchmarks/lab_messaging.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')} "
        f"({platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}); "
        f"{lab.broker}; lab run directory `{shown_run_dir}`.",
        "",
        f"Setting: `{shown_config}`"
        f" — {config.agents} agents, topology {config.topology.kind} ({sum(degrees) // 2} edges, "
        f"degrees {min(degrees)}–{max(degrees)}), model {config.model}, batch {config.algorithm.batch_size}, "
        f"{config.data.dataset} ({config.data.partition} partition); {config.rounds} rounds; mask codec "
        f"`{lab.codec}`; {config.agents} `edge-mcepl join` processes with one torch thread each, "
        f"one mosquitto; round deadline {settings.round_deadline_s:g} s (never reached: every mask arrived). "
        f"Wall time {lab.wall:.0f} s including start-up (data loading is serialised two at a time) "
        "and the final evaluation.",
        "",
        "**Caveat:** this machine has 2 CPU cores, so 20 agents time-share them: a round takes tens of seconds "
        "instead of ~1 s on a device of its own, and a receiving agent's network thread also waits for CPU, which "
        "inflates the messaging times below. Compare the ratio, not absolute times (DESIGN.md: timings here drift "
        "by tens of percent).",
        "",
        "## Time per agent and round (seconds; median / p90 / max over agent-rounds)",
        "",
        "| | median | p90 | max |",
        "|---|---|---|---|",
        row3("messaging: slowest neighbour message, its publish → arrival", "msg"),
        row3("gather wait: own publish → last neighbour mask (includes slower neighbours' compute)", "wait"),
        row3("compute: local step + encode + decode/aggregate/consensus", "compute"),
        row3("round time (without evaluation)", "round_time"),
        row3("messaging / round time", "share"),
        "",
        f"Single messages ({len(all_lat)} mask deliveries): median {statistics.median(all_lat) * 1000:.1f} ms, "
        f"p90 {pct(all_lat, 0.9) * 1000:.1f} ms, max {max(all_lat) * 1000:.1f} ms.",
        "",
        f"**Messaging share of round time: {share_total * 100:.2f} %** (Σ messaging / Σ round time over all "
        f"agent-rounds; per agent-round median {statistics.median(p['share'] for p in per) * 100:.2f} %, max "
        f"{max(p['share'] for p in per) * 100:.2f} %). Target < 5 %: "
        f"{'met' if share_total < 0.05 else 'NOT met'}.",
        "",
        *([f"**Masks:** the lab's final masks are bit-identical to `edge-mcepl simulate`'s for "
           f"{identical} of {config.agents} agents (`{args.simulator_run}`, same config, `--threads 1`).", ""]
          if identical is not None else []),
    ]
    for run in labs:
        received, sent = run.per_round("bytes_received"), run.per_round("bytes_sent")
        equal = received == sent
        payload = run.payload_total(degrees)
        messages = sum(degrees) * config.rounds
        lines += [
            f"## Bytes per round, mask codec `{run.codec}`",
            "",
            "| round | mask payload delivered to agents (measured at receivers) | senders' count Σᵢ bytes_sent "
            "(the simulator's) | equal | bits per weight per delivered message |",
            "|---|---|---|---|---:|",
            *[f"| {t} | {received[t]:,} | {sent[t]:,} | {'yes' if received[t] == sent[t] else 'NO'} | "
              f"{8 * received[t] / (sum(degrees) * weights):.4f} |" for t in received],
            "",
            f"Byte counts equal: **{'yes' if equal else 'NO'}** ({weights:,} masked weights per agent; "
            f"{'no message sent again' if not any(r['resent'] for r in run.rows) else 'some messages sent again'}).",
            "",
            f"All MQTT traffic through the broker during the lab (mosquitto `$SYS/broker/bytes`, both directions, "
            f"start-up and shutdown included): **{run.mqtt_total:,} bytes** = {run.mqtt_total / config.rounds:,.0f} "
            f"per round. Mask payload crossing the broker (each message in once, out once per neighbour): "
            f"{payload:,.0f} bytes. Everything else — MQTT framing, PUBACKs, retained config, status and keyframe "
            f"messages, keep-alives — {(run.mqtt_total - payload) / payload * 100:+.3f} % on top "
            f"({(run.mqtt_total - payload) / messages:,.0f} bytes per delivered mask).",
            "",
        ]
    if len(labs) == 2:
        a, b = labs
        lines += [f"**`{a.codec}` vs `{b.codec}`, same lab, same rounds:** {a.mqtt_total:,} vs {b.mqtt_total:,} "
                  f"bytes through mosquitto — {b.mqtt_total / a.mqtt_total:.1f}× fewer with `{a.codec}`. The first "
                  "round's messages stand alone (a keyframe costs what Rice costs), so over a short run the "
                  "keyframe dominates; docs/codec.md has the whole-run figures.", ""]
    lines += [
        "## How it is measured",
        "",
        "Each join process writes one metrics row per round (`runs/.../agents/agent_NNN/metrics.jsonl`, merged into "
        "the run's `metrics.jsonl`) with `published_at` (wall clock just before the MQTT publish of its mask), "
        "`arrivals` (wall clock at which each neighbour's mask for that round was accepted by its transport, in the "
        "paho network thread), `train_seconds`, `gather_seconds`, `aggregate_seconds`, `eval_seconds` and "
        "`round_seconds`. All processes run on one machine, so the wall clocks agree and "
        "`arrival_i(j) − published_at_j` is the one-way time of one message through mosquitto, "
        "independent of how long agent i itself waited. TCP_NODELAY is set on every client socket and "
        "`set_tcp_nodelay true` in the generated mosquitto config.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
