"""How the simulator's round time and memory grow with the number of agents → docs/scale.md.

For each model (small-cnn on MNIST, AlexNet-CIFAR on CIFAR-10), graph (4-regular, and Erdős–Rényi
with mean degree ≥ 4: :func:`erdos_renyi_p`) and lab size (20, 100, 500 agents), one fresh process
builds the lab (the ``reference`` preset, 3 classes per agent, 2 torch threads) and runs training
rounds without evaluation: the first is a warm-up, the others are timed. It reports the median
round, the round per agent, the resident memory after building and the peak, and — from the
agents' own tensors — where an agent's memory goes (scores and their gradient, m̄, the cached
mask, its share of the data, the masks it holds of its neighbours). Each configuration runs alone
(one child process at a time): the machine's two cores are the whole budget, so a ratio between
rows of one run is what to read, not an absolute time.

Usage::

    .venv/bin/python benchmarks/scale.py [--agents 20 100 500] [--rounds 3] [--models small-cnn alexnet-cifar]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASET = {"small-cnn": "mnist", "alexnet-cifar": "cifar10"}
GRAPHS = ("k-regular", "erdos-renyi")
MEAN_DEGREE = 4
MB = 1 << 20


def lab_config(model: str, graph: str, agents: int, rounds: int, data_dir: str) -> dict[str, Any]:
    topology: dict[str, Any] = ({"kind": "k-regular", "k": MEAN_DEGREE} if graph == "k-regular" else
                                {"kind": "erdos-renyi", "p": erdos_renyi_p(agents)})
    return {"name": f"scale-{model}-{graph}-{agents}", "seed": 7, "agents": agents, "rounds": rounds,
            "eval_every": 10**6, "model": model, "threads": 2,
            "data": {"dataset": DATASET[model], "data_dir": data_dir, "partition": "classes",
                     "classes_per_agent": 3},
            "topology": topology, "algorithm": {"preset": "reference"}}


def erdos_renyi_p(agents: int) -> float:
    """Mean degree 4, or 1.5·ln N / N where that is too sparse to be connected (a connected graph is drawn)."""
    return max(MEAN_DEGREE / (agents - 1), 1.5 * math.log(agents) / agents)


def tensor_bytes(*tensors: Any) -> int:
    import torch

    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def agent_memory(agent: Any) -> dict[str, float]:
    """MB one agent holds in each of its parts (the fixed weights are shared by all and not counted)."""
    layers = agent.rule.layers
    held = [h for h in agent.rule.history.entries()]
    return {
        "scores": tensor_bytes(*(s.scores for s in layers)) / MB,
        "score gradient": tensor_bytes(*(s.scores.grad for s in layers)) / MB,
        "m̄": sum(s.held_bytes()["m̄"] for s in layers) / MB,
        "cached mask": sum(s.held_bytes()["cached mask"] for s in layers) / MB,
        "training data": tensor_bytes(agent.train_data.images, agent.train_data.labels) / MB,
        "neighbours' masks held": sum(len(b) for h in held for b in h.layers) / MB,
        "own sent masks": sum(len(b) for h in agent.recent for b in h.layers) / MB,
    }


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def run_one(model: str, graph: str, agents: int, rounds: int, data_dir: str) -> dict[str, Any]:
    """One lab in this process: build it, run ``rounds`` training rounds (the first untimed)."""
    from edge_mcepl.config import config_from_dict
    from edge_mcepl.simulator import Simulator

    started_rss = rss_mb()
    began = time.perf_counter()
    sim = Simulator(config_from_dict(lab_config(model, graph, agents, rounds, data_dir)), log=lambda _: None)
    built, built_rss = time.perf_counter() - began, rss_mb()
    times = []
    for t in range(rounds):
        start = time.perf_counter()
        sim.run_round(t)
        times.append(time.perf_counter() - start)
    timed = times[1:] or times
    degrees = [len(a.neighbours) for a in sim.agents]
    parts = [agent_memory(a) for a in sim.agents]
    return {"model": model, "graph": graph, "agents": agents, "rounds_timed": len(timed),
            "round_s": statistics.median(timed), "per_agent_s": statistics.median(timed) / agents,
            "build_s": built, "rss_start_mb": started_rss, "rss_built_mb": built_rss, "rss_end_mb": rss_mb(),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "mean_degree": statistics.mean(degrees), "max_degree": max(degrees),
            "per_agent_parts_mb": {k: statistics.mean(p[k] for p in parts) for k in parts[0]}}


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | graph | agents | mean / max degree | round (s) | per agent (s) | build (s) | "
             "memory after build (MB) | peak (MB) | peak per agent (MB) |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "failed" in r:
            lines.append(f"| {r['model']} | {r['graph']} | {r['agents']} | | **failed: {r['failed']}** | | | | | |")
            continue
        per_agent = (r["peak_mb"] - r["rss_start_mb"]) / r["agents"]
        lines.append(f"| {r['model']} | {r['graph']} | {r['agents']} | {r['mean_degree']:.1f} / {r['max_degree']} | "
                     f"{r['round_s']:.2f} | {r['per_agent_s'] * 1000:.1f} ms | {r['build_s']:.1f} | "
                     f"{r['rss_built_mb']:,.0f} | {r['peak_mb']:,.0f} | {per_agent:.1f} |")
    return lines


def growth(results: list[dict[str, Any]]) -> list[str]:
    """Per model and graph: the per-agent round time and memory at the largest lab over the smallest."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in results):
        for graph in GRAPHS:
            rows = sorted((r for r in results if r["model"] == model and r["graph"] == graph and "failed" not in r),
                          key=lambda r: r["agents"])
            if len(rows) < 2:
                continue
            small, large = rows[0], rows[-1]
            mem = [(r["peak_mb"] - r["rss_start_mb"]) / r["agents"] for r in (small, large)]
            lines.append(f"- {model}, {graph}: {small['agents']} → {large['agents']} agents "
                         f"({large['agents'] / small['agents']:.0f}×): round time ×"
                         f"{large['round_s'] / small['round_s']:.1f}, per-agent time ×"
                         f"{large['per_agent_s'] / small['per_agent_s']:.2f}, peak memory per agent "
                         f"{mem[0]:.1f} → {mem[1]:.1f} MB.")
    return lines


def parts_table(results: list[dict[str, Any]]) -> list[str]:
    done = [r for r in results if "failed" not in r]
    by_model = {r["model"]: r for r in sorted(done, key=lambda r: r["agents"])}  # the largest lab per model
    keys = list(next(iter(by_model.values()))["per_agent_parts_mb"])
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for model, r in by_model.items():
        lines.append(f"| {model} ({r['agents']} agents) | "
                     + " | ".join(f"{r['per_agent_parts_mb'][k]:.2f}" for k in keys) + " |")
    return lines


def before_after(results: list[dict[str, Any]], before: list[dict[str, Any]]) -> list[str]:
    """Peak memory per agent of the same labs in an earlier run (before a change) and now."""
    earlier = {(r["model"], r["graph"], r["agents"]): r for r in before if "failed" not in r}
    lines = ["| model | graph | agents | peak per agent before (MB) | now (MB) | now ÷ before | round now ÷ before |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        old = earlier.get((r["model"], r["graph"], r["agents"]))
        if old is None or "failed" in r:
            continue
        was, now = ((x["peak_mb"] - x["rss_start_mb"]) / x["agents"] for x in (old, r))
        lines.append(f"| {r['model']} | {r['graph']} | {r['agents']} | {was:.1f} | {now:.1f} | {now / was:.2f} | "
                     f"{r['round_s'] / old['round_s']:.2f} |")
    return lines if len(lines) > 2 else []


def capacity(results: list[dict[str, Any]]) -> list[str]:
    """How many agents this machine's memory holds, at the largest lab's peak per agent (what limits a lab here)."""
    import psutil

    total = psutil.virtual_memory().total / MB
    lines = []
    for model in dict.fromkeys(r["model"] for r in results if "failed" not in r):
        largest = max((r for r in results if r["model"] == model and "failed" not in r), key=lambda r: r["agents"])
        per_agent = (largest["peak_mb"] - largest["rss_start_mb"]) / largest["agents"]
        fits = int((total - largest["rss_start_mb"]) / per_agent)
        lines.append(f"- {model}: {per_agent:.1f} MB per agent at {largest['agents']} agents ⇒ about {fits:,} agents "
                     f"in this machine's {total / 1024:.0f} GiB; a round then takes about "
                     f"{fits * largest['per_agent_s'] / 60:.0f} min at "
                     f"{largest['per_agent_s'] * 1000:.0f} ms per agent.")
    return ["What limits a lab on this machine:", "", *lines, ""] if lines else []


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every lab, one child process each; a child that fails (e.g. killed for memory) is a row saying so."""
    results: list[dict[str, Any]] = []
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "w") as log:
        for model in args.models:
            for graph in args.graphs:
                for agents in args.agents:
                    print(f"{model} {graph} {agents} agents ...", flush=True)
                    out = subprocess.run([sys.executable, __file__, "--one", model, graph, str(agents),
                                          "--rounds", str(args.rounds), "--data-dir", args.data_dir],
                                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
                    if out.returncode:
                        why = "killed (out of memory?)" if out.returncode < 0 else f"exit {out.returncode}"
                        print(out.stderr[-3000:], flush=True)
                        results.append({"model": model, "graph": graph, "agents": agents, "failed": why})
                    else:
                        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    log.write(json.dumps(results[-1]) + "\n")
                    log.flush()
                    print("  " + table(results[-1:])[-1], flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, nargs="+", default=[20, 100, 500])
    ap.add_argument("--models", nargs="+", default=list(DATASET), choices=list(DATASET))
    ap.add_argument("--graphs", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    ap.add_argument("--rounds", type=int, default=3, help="rounds per lab; the first is a warm-up (default 3)")
    ap.add_argument("--data-dir", default=str((ROOT / ".." / "shared" / "data").resolve()))
    ap.add_argument("--out", default=str(ROOT / "docs" / "scale.md"))
    ap.add_argument("--results", default=str(ROOT / "runs" / "scale.jsonl"), help="one JSON line per lab")
    ap.add_argument("--from-results", metavar="JSONL", help="write the report from an earlier run's --results")
    ap.add_argument("--before", metavar="JSONL", help="an earlier run's --results to compare peak memory with")
    ap.add_argument("--note", default="", help="a sentence on how this run was taken, printed under the command")
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "GRAPH", "AGENTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        model, graph, agents = args.one
        print(json.dumps(run_one(model, graph, int(agents), args.rounds, args.data_dir)))
        return 0

    if args.from_results:
        results = [json.loads(line) for line in Path(args.from_results).read_text().splitlines() if line.strip()]
    else:
        results = run_all(args)

    import torch

    lines = [
        "# Scale: the simulator's round time and memory from 20 to 500 agents",
        "",
        f"Generated by `benchmarks/scale.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')} "
        + (f"from the results of an earlier run of the same options (`{args.from_results}`) "
           if args.from_results else "") +
        f"({platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, Python "
        f"{platform.python_version()}). Each lab runs in a fresh process, alone; {args.rounds} training rounds, "
        "the first a warm-up (the table: the median of the others), no evaluation; the `reference` preset, "
        f"3 classes per agent, 2 torch threads; Erdős–Rényi with p = max({MEAN_DEGREE}/(N−1), 1.5·ln N/N) "
        "(sparser is not connected at 500 agents), so its mean degree grows with N. Memory is the "
        "process's resident set (psutil; peak: `ru_maxrss`), per agent = (peak − the interpreter's before "
        "building) / agents." + (f" {args.note}" if args.note else ""),
        "",
        *table(results),
        "",
        "How it grows:",
        "",
        *growth(results),
        "",
        "Where one agent's memory goes, MB (its own tensors after the last round; the fixed weights are one "
        "copy shared by every agent):",
        "",
        *parts_table(results),
        "",
        *capacity(results),
    ]
    if args.before:
        before = [json.loads(line) for line in Path(args.before).read_text().splitlines() if line.strip()]
        lines += ["", f"Against the earlier run `{args.before}` (same labs; its code held m̄ and the cached mask as "
                  "float32 and an agent's last sent masks unpacked — now uint8 vote counts, bools and packed bits, "
                  "with the same results bit for bit, `tests/test_compact_state.py`; round times of two runs on "
                  "this machine drift by tens of percent):", "", *before_after(results, before)]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
