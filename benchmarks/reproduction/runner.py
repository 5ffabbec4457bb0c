"""Running the experiments: one simulator run each, reused when finished, recorded beside its metrics.

Separate from the report so that ``--report-only`` (and the tests of the report) never needs to
run anything, and so that worker processes (``--jobs``) import only what a run needs.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from benchmarks.reproduction.configs import with_overrides
from benchmarks.reproduction.experiments import Experiment
from edge_mcepl.config import config_from_dict
from edge_mcepl.metrics import read_metrics
from edge_mcepl.nn.device import describe_device, resolve_device
from edge_mcepl.simulator import Simulator


def hardware(threads: int, device: str = "cpu") -> str:
    """What a run ran on, recorded beside its metrics (runs of one report may come from several machines)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "" if device == "cpu" else f"GPU {describe_device(resolve_device(device))}, "
    return (f"{gpu}{cpu}, {os.cpu_count()} logical CPUs visible, torch.set_num_threads({threads}), "
            f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}")


def run_experiment(exp: Experiment, raw: dict[str, Any], run_dir: Path, rerun: bool, command: str = "") -> None:
    """Run one experiment into ``run_dir``, unless a finished run is already there (and ``rerun`` is off)."""
    config = config_from_dict(with_overrides(raw, exp.overrides), f"reproduce:{exp.key}")
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists() and not rerun:
        rows = read_metrics(metrics)
        if rows and max(r["round"] for r in rows) == config.rounds:
            print(f"[{exp.key}] reusing finished run {run_dir}")
            return
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    # Written first, so a run cut short (a GPU lease ending) still says how it was started and where.
    (run_dir / "command.txt").write_text(command + "\n")
    (run_dir / "hardware.txt").write_text(hardware(config.threads, config.device) + "\n")
    start = time.perf_counter()
    Simulator(config, log=lambda s: print(f"[{exp.key}] {s}", flush=True)).run(run_dir, progress=False)
    (run_dir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")


def run_all(selected: list[Experiment], raw: dict[str, Any], out: Path, rerun: bool, command: str, jobs: int) -> None:
    """Run experiments one after another, or ``jobs`` at a time in separate processes.

    Separate processes (spawned, not forked: OpenMP is not fork-safe) because torch's intra-op
    threads scale poorly on a few cores — two 1-thread runs finish sooner than two 2-thread runs
    back to back — and passive OpenMP waiting so idle workers do not spin on each other's core.
    """
    if jobs <= 1:
        for e in selected:
            run_experiment(e, raw, out / e.key, rerun, command)
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_experiment, e, raw, out / e.key, rerun, command) for e in selected]
        for future in futures:
            future.result()  # re-raises a failed run's error
