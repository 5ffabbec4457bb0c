"""Round time of the same lab in process and on Ray workers, one machine, same run → docs/cluster.md's table.

Three ways in one run, each after a warm-up round: the in-process simulator with 1 thread (the
run Ray must reproduce bit for bit), the in-process simulator with every core as threads (how this
machine is used without Ray), and ``--backend ray`` with one 1-thread worker per core on a local
Ray. What Ray costs is the routing of every message through the driver and a process per shard;
what it buys on one machine is agents computing in parallel processes.

Usage::

    .venv/bin/python benchmarks/ray_rounds.py [--agents 20] [--rounds 3] [--model alexnet-cifar]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_mcepl.backends.base import SimulationBackend  # noqa: E402
from edge_mcepl.backends.factory import RayOptions, open_backend  # noqa: E402
from edge_mcepl.config import config_from_dict  # noqa: E402

DATASET = {"small-cnn": "mnist", "alexnet-cifar": "cifar10"}


def round_times(backend: SimulationBackend, rounds: int) -> float:
    backend.run_round(0)  # warm-up
    times = []
    for t in range(1, rounds):
        start = time.perf_counter()
        backend.run_round(t)
        times.append(time.perf_counter() - start)
    backend.close()
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="alexnet-cifar", choices=list(DATASET))
    ap.add_argument("--data-dir", default=str((ROOT / ".." / "shared" / "data").resolve()))
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    raw = {"name": "ray-rounds", "seed": 7, "agents": args.agents, "rounds": args.rounds, "model": args.model,
           "data": {"dataset": DATASET[args.model], "data_dir": args.data_dir, "partition": "classes",
                    "classes_per_agent": 3},
           "topology": {"kind": "k-regular", "k": 4}}
    quiet = lambda _: None  # noqa: E731
    runs = {
        "in process, 1 thread": open_backend(config_from_dict({**raw, "threads": 1}), log=quiet),
        f"in process, {cores} threads": open_backend(config_from_dict({**raw, "threads": cores}), log=quiet),
    }
    results = {name: round_times(backend, args.rounds) for name, backend in runs.items()}
    ray = open_backend(config_from_dict({**raw, "threads": 1}), "ray", RayOptions(workers=cores, worker_cpus=1),
                       log=quiet)
    results[f"ray, {cores} workers × 1 thread"] = round_times(ray, args.rounds)
    base = results["in process, 1 thread"]
    print(f"{args.model}, {args.agents} agents, 4-regular graph, median of {args.rounds - 1} rounds after a warm-up:")
    print("| how | round (s) | vs in process, 1 thread |\n|---|---:|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.2f} | {base / seconds:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
