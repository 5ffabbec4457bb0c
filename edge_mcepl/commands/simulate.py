"""``edge-mcepl simulate``: a whole lab in one process."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends.factory import RayOptions
from ..errors import UserError

if TYPE_CHECKING:
    from ..config import LabConfig

DEFAULT_CHECKPOINT_EVERY = 25  # rounds: a long run loses at most this much to a crash or a session's end


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("simulate", help="run a whole lab in one process (in-memory transport)")
    sim.add_argument("config", nargs="?", help="lab config YAML (see examples/); not with --resume")
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
    sim.add_argument("--checkpoint-every", type=int, metavar="N",
                     help=f"save every agent's state every N rounds in RUN_DIR/checkpoints/ (default "
                          f"{DEFAULT_CHECKPOINT_EVERY}, 0 = never; removed when the run ends)")
    sim.add_argument("--resume", metavar="RUN_DIR",
                     help="continue the interrupted run in RUN_DIR after its latest checkpoint, with its config.yaml "
                          "(besides --no-progress, --checkpoint-every and the --backend options, nothing may be "
                          "given)")
    sim.add_argument("--batched", action="store_true",
                     help="run all agents' local steps as one pass (grouped convolutions; MCE-PL family, one "
                          "width; docs/batched-engine.md): equal to the per-agent loop within float tolerance")
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

    config, run_dir = resumed_run(args) if args.resume else new_run(args)
    print(f"edge-mcepl simulate: {config.name}: {config.agents} agents, {config.rounds} rounds, model {config.model}, "
          f"preset {config.algorithm.preset}, seed {config.seed}")
    ray = ray_options(args)
    every = DEFAULT_CHECKPOINT_EVERY if args.checkpoint_every is None else args.checkpoint_every
    if every < 0:
        raise UserError(f"--checkpoint-every {every}: must be ≥ 0 (0: never)")
    sim = open_backend(config, args.backend, ray, batched=args.batched)
    try:
        print(f"weights fingerprint {sim.fingerprint_hex}; topology {config.topology.kind} "
              f"({sim.topology.num_edges} edges); run directory {run_dir}")
        summary = sim.run(run_dir, progress=not args.no_progress, checkpoint_every=every, resume=bool(args.resume))
    finally:
        sim.close()
    print(summary)
    final = (f"{run_dir}/final/ (masks for export)" if sim.learns_masks
             else f"no final/ ({config.algorithm.name} learns weights, not masks: nothing to export)")
    print(f"wrote {run_dir}/metrics.jsonl, {final}, {run_dir}/summary.txt")
    return 0


def new_run(args: argparse.Namespace) -> tuple[LabConfig, Path]:
    """The config from the YAML and the command line, and a new, empty run directory."""
    from ..config import load_config

    if not args.config:
        raise UserError("give a lab config YAML (or --resume RUN_DIR)")
    overrides = {"rounds": args.rounds, "agents": args.agents, "seed": args.seed, "eval_every": args.eval_every,
                 "threads": args.threads, "data.data_dir": args.data_dir and str(Path(args.data_dir).resolve()),
                 "algorithm.preset": args.preset, "device": args.device}
    config = load_config(args.config, overrides)
    run_dir = Path(args.out) if args.out else Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"--out {run_dir}: directory exists and is not empty; choose a new run directory "
                        "(or --resume it)")
    return config, run_dir


def resumed_run(args: argparse.Namespace) -> tuple[LabConfig, Path]:
    """The interrupted run's own config (its ``config.yaml``: nothing may change it) and its directory."""
    from ..backends.checkpoints import CHECKPOINT_DIR
    from ..run_dir import FINAL_DIR, read_config

    given = {"config": args.config, "--rounds": args.rounds, "--agents": args.agents, "--seed": args.seed,
             "--eval-every": args.eval_every, "--threads": args.threads, "--device": args.device,
             "--preset": args.preset, "--data-dir": args.data_dir, "--out": args.out}
    extra = [name for name, value in given.items() if value is not None]
    if extra:
        raise UserError(f"--resume: {extra[0]} cannot be given; a resumed run continues with its own config.yaml")
    run_dir = Path(args.resume)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"--resume {run_dir}: not a run directory (no config.yaml)")
    if (run_dir / FINAL_DIR).is_dir() or not (run_dir / CHECKPOINT_DIR).is_dir():
        raise UserError(f"--resume {run_dir}: " + ("the run is complete" if (run_dir / FINAL_DIR).is_dir() else
                                                   f"no {CHECKPOINT_DIR}/ to resume from (written every "
                                                   "--checkpoint-every rounds)"))
    return read_config(run_dir), run_dir


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
