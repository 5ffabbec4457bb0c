"""``edge-mcepl simulate``: a whole lab in one process."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("simulate", help="run a whole lab in one process (in-memory transport)")
    sim.add_argument("config", help="lab config YAML (see examples/)")
    sim.add_argument("--rounds", type=int)
    sim.add_argument("--agents", type=int)
    sim.add_argument("--seed", type=int)
    sim.add_argument("--eval-every", type=int)
    sim.add_argument("--threads", type=int)
    sim.add_argument("--device", help="cpu (default), cuda or cuda:N — where the whole lab computes")
    sim.add_argument("--preset", help="algorithm preset: reference or structured")
    sim.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ or the MNIST idx files")
    sim.add_argument("--out", help="run directory (default runs/NAME-TIMESTAMP)")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..simulator import Simulator

    overrides = {"rounds": args.rounds, "agents": args.agents, "seed": args.seed, "eval_every": args.eval_every,
                 "threads": args.threads, "data.data_dir": args.data_dir and str(Path(args.data_dir).resolve()),
                 "algorithm.preset": args.preset, "device": args.device}
    config = load_config(args.config, overrides)
    run_dir = Path(args.out) if args.out else Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"--out {run_dir}: directory exists and is not empty; choose a new run directory")
    print(f"edge-mcepl simulate: {config.name}: {config.agents} agents, {config.rounds} rounds, model {config.model}, "
          f"preset {config.algorithm.preset}, seed {config.seed}")
    sim = Simulator(config)
    print(f"weights fingerprint {sim.fixed.fingerprint_hex}; topology {config.topology.kind} "
          f"({sim.topology.num_edges} edges); run directory {run_dir}")
    summary = sim.run(run_dir, progress=not args.no_progress)
    print(summary)
    final = (f"{run_dir}/final/ (masks for export)" if sim.learns_masks
             else f"no final/ ({config.algorithm.name} learns weights, not masks: nothing to export)")
    print(f"wrote {run_dir}/metrics.jsonl, {final}, {run_dir}/summary.txt")
    return 0
