"""``edge-mcepl lab``: a broker plus one `join` process per agent on this machine (the multi-process lab)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import UserError
from .broker import add_lab_settings, lab_settings
from .dashboard import add_dashboard_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="run a whole device lab on this machine: a broker and N join processes")
    p.add_argument("config", help="lab config YAML (see examples/)")
    p.add_argument("--profiles", help="comma-separated device profiles assigned round-robin to the agents, "
                                      "e.g. rpi4,rpi5,laptop (bundled names or YAML files)")
    p.add_argument("--out", help="run directory (default runs/NAME-lab-TIMESTAMP)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted lab in --out from its checkpoints, with the options it started with")
    p.add_argument("--broker-kind", choices=("auto", "mosquitto", "python"),
                   help="auto (default): mosquitto when installed, else the built-in Python broker")
    p.add_argument("--port", type=int, help="broker port on 127.0.0.1 (default: a free one)")
    p.add_argument("--rounds", type=int)
    p.add_argument("--agents", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--threads", type=int, help="lab threads (each agent's default when it has no profile)")
    p.add_argument("--preset", help="algorithm preset: reference or structured")
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ or the MNIST idx files")
    p.add_argument("--agents-per-process", type=int, default=1, metavar="K",
                   help="agents each join process hosts (`join --agent-id`; default 1): a large lab on one machine "
                        "shares one copy of torch, the data and the fixed weights per K agents")
    p.add_argument("--verbose", action="store_true", help="agents log MQTT details")
    add_lab_settings(p)
    add_dashboard_option(p)
    # Not given stays None: a new lab takes the defaults, a resumed one the run's (lab.json).
    p.set_defaults(func=run, round_deadline=None, max_staleness=None, start_timeout=None)


def run(args: argparse.Namespace) -> int:
    from ..devicelab.launcher import run_lab
    from ..devicelab.session import LabOptions

    data_dir = args.data_dir and str(Path(args.data_dir).resolve())
    overrides = {"rounds": args.rounds, "agents": args.agents, "seed": args.seed, "eval_every": args.eval_every,
                 "threads": args.threads, "data.data_dir": data_dir, "algorithm.preset": args.preset}
    if args.verbose:
        logging.getLogger("edge_mcepl").setLevel(logging.INFO)
    if args.agents_per_process < 1:
        raise UserError(f"--agents-per-process {args.agents_per_process}: must be at least 1")
    profiles = None if args.profiles is None else [p.strip() for p in args.profiles.split(",") if p.strip()]
    return run_lab(args.config, overrides, LabOptions(
        out=args.out, profiles=profiles, broker_kind=args.broker_kind, port=args.port, settings=lab_settings(args),
        verbose=args.verbose, resume=args.resume, dashboard=args.dashboard,
        agents_per_process=args.agents_per_process))
