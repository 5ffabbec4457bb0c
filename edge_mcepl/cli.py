"""``edge-mcepl`` command line: parses, validates, calls the library — nothing more.

A :class:`~edge_mcepl.errors.UserError` anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .errors import UserError


def _simulate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .lab import Simulator

    overrides = {"rounds": args.rounds, "agents": args.agents, "seed": args.seed, "eval_every": args.eval_every,
                 "threads": args.threads, "data.data_dir": args.data_dir and str(Path(args.data_dir).resolve()),
                 "algorithm.preset": args.preset}
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
    print(f"wrote {run_dir}/metrics.jsonl, {run_dir}/final/ (masks for export), {run_dir}/summary.txt")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .nn.weights import generate_fixed_weights
    from .nn.zoo import ZOO, build_model

    for name, entry in ZOO.items():
        model = build_model(name)
        n = sum(layer.weight.numel() for _, layer in model.masked_layers())
        fp = generate_fixed_weights(model, name, args.seed).fingerprint_hex
        print(f"{name:14s} input {entry.input_shape}  {n:>9,d} masked weights  fingerprint(seed {args.seed}) {fp}  "
              f"— {entry.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-mcepl", description="MCE-PL personalized mask learning for device labs")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="run a whole lab in one process (in-memory transport)")
    sim.add_argument("config", help="lab config YAML (see examples/)")
    sim.add_argument("--rounds", type=int)
    sim.add_argument("--agents", type=int)
    sim.add_argument("--seed", type=int)
    sim.add_argument("--eval-every", type=int)
    sim.add_argument("--threads", type=int)
    sim.add_argument("--preset", help="algorithm preset: reference or structured")
    sim.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ or the MNIST idx files")
    sim.add_argument("--out", help="run directory (default runs/NAME-TIMESTAMP)")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(func=_simulate)

    models = sub.add_parser("models", help="list the model zoo with weight counts and fingerprints")
    models.add_argument("--seed", type=int, default=1234)
    models.set_defaults(func=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UserError as exc:
        print(f"edge-mcepl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-mcepl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
