"""``edge-mcepl simulate``: a whole lab in one process."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..backends.factory import RayOptions
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
    sim.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="local: every agent in this process (default); ray: shards of agents on Ray workers "
                          "(the cluster extra; docs/cluster.md)")
    sim.add_argument("--workers", type=int, help="ray: number of workers (shards of agents; default 2)")
    sim.add_argument("--ray-address", help="ray: a running cluster (host:port or auto); default: a local one "
                                           "on loopback for this run")
    sim.add_argument("--worker-cpus", type=float, help="ray: CPUs each worker reserves (default: the threads)")
    sim.add_argument("--worker-gpus", type=float,
                     help="ray: GPUs each worker reserves, fractions allowed (> 0 computes on cuda)")
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backends.factory import open_backend
    from ..config import load_config

    overrides = {"rounds": args.rounds, "agents": args.agents, "seed": args.seed, "eval_every": args.eval_every,
                 "threads": args.threads, "data.data_dir": args.data_dir and str(Path(args.data_dir).resolve()),
                 "algorithm.preset": args.preset, "device": args.device}
    config = load_config(args.config, overrides)
    run_dir = Path(args.out) if args.out else Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"--out {run_dir}: directory exists and is not empty; choose a new run directory")
    print(f"edge-mcepl simulate: {config.name}: {config.agents} agents, {config.rounds} rounds, model {config.model}, "
          f"preset {config.algorithm.preset}, seed {config.seed}")
    ray = ray_options(args)
    sim = open_backend(config, args.backend, ray)
    try:
        print(f"weights fingerprint {sim.fingerprint_hex}; topology {config.topology.kind} "
              f"({sim.topology.num_edges} edges); run directory {run_dir}")
        summary = sim.run(run_dir, progress=not args.no_progress)
    finally:
        sim.close()
    print(summary)
    final = (f"{run_dir}/final/ (masks for export)" if sim.learns_masks
             else f"no final/ ({config.algorithm.name} learns weights, not masks: nothing to export)")
    print(f"wrote {run_dir}/metrics.jsonl, {final}, {run_dir}/summary.txt")
    return 0


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray options (None for the local backend); a bad or misplaced one is one line naming it."""
    given = {"--workers": args.workers, "--ray-address": args.ray_address, "--worker-cpus": args.worker_cpus,
             "--worker-gpus": args.worker_gpus}
    if args.backend != "ray":
        misplaced = [name for name, value in given.items() if value is not None]
        if misplaced:
            raise UserError(f"{misplaced[0]} applies to --backend ray only")
        return None
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: at least 1")
    if args.worker_cpus is not None and args.worker_cpus <= 0:
        raise UserError(f"--worker-cpus {args.worker_cpus:g}: must be > 0")
    if args.worker_gpus is not None and args.worker_gpus < 0:
        raise UserError(f"--worker-gpus {args.worker_gpus:g}: must be ≥ 0")
    return RayOptions(workers=args.workers or 2, address=args.ray_address, worker_cpus=args.worker_cpus,
                      worker_gpus=args.worker_gpus or 0.0)
