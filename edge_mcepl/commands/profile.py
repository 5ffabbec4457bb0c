"""``edge-mcepl profile``: detect this machine's profile; show or list profiles with their retention ratio."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atomic import atomic_write
from ..errors import UserError
from .paths import writable_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="device profiles: detect this machine, show or list profiles")
    actions = p.add_subparsers(dest="action", required=True)
    d = actions.add_parser("detect", help="write a profile for this machine (psutil + a matmul micro-benchmark)")
    d.add_argument("--out", help="YAML file to write (default: print to stdout)")
    d.add_argument("--name", help="profile name (default: the host name)")
    d.add_argument("--seconds", type=float, default=1.0, help="micro-benchmark duration (default 1 s)")
    d.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    d.set_defaults(func=detect)
    s = actions.add_parser("show", help="validate a profile and show the structure it gets (budget vs exported MACs)")
    s.add_argument("profile", help="a YAML file or a bundled name")
    s.add_argument("--model", default="alexnet-cifar")
    s.set_defaults(func=show)
    ls = actions.add_parser("list", help="the bundled profiles: width, budget MACs and exported MACs")
    ls.add_argument("--model", default="alexnet-cifar")
    ls.set_defaults(func=list_profiles)


def detect(args: argparse.Namespace) -> int:
    from ..profiles import detect_profile, profile_yaml

    if not 0.05 <= args.seconds <= 600:
        raise UserError(f"--seconds {args.seconds}: must be in [0.05, 600]")
    if args.out:
        writable_file("--out", args.out)  # before the benchmark, not after it
    if args.out and Path(args.out).exists() and not args.force:
        raise UserError(f"--out {args.out}: exists; pass --force to overwrite")
    profile = detect_profile(args.seconds, args.name)
    text = profile_yaml(profile, args.seconds)
    if not args.out:
        sys.stdout.write(text)
        return 0
    atomic_write(args.out, text)
    print(f"wrote {args.out}: {profile.cores} cores, {profile.memory_mb} MB, {profile.gflops:g} GFLOP/s "
          "(edit uplink_mbps and the budget section to match this device's use)", file=sys.stderr)
    return 0


def show(args: argparse.Namespace) -> int:
    from ..profiles import load_profile, policy_structure, resolve_profile_path

    profile = load_profile(args.profile)
    print(f"{profile.name}: {resolve_profile_path(args.profile)} — valid")
    print(f"  {profile.description}")
    print(f"  {profile.cores} cores, {profile.memory_mb} MB, {profile.gflops:g} GFLOP/s, uplink "
          f"{profile.uplink_mbps:g} Mbit/s; budget {profile.inference_latency_ms:g} ms, {profile.model_memory_mb:g} MB")
    decision = policy_structure(profile, args.model)
    print(f"  structure: {decision.detail}")
    print(f"  {args.model}: budget {decision.budget_macs:,} MACs / {decision.budget_params:,} parameters; exported "
          f"at width {decision.width:g}: {decision.exported_macs:,} MACs / {decision.exported_params:,} parameters")
    return 0


def list_profiles(args: argparse.Namespace) -> int:
    from ..profiles import bundled_profiles, load_profile, policy_structure

    print(f"{'profile':18s} {'width':>6s} {'budget MACs':>13s} {'exported MACs':>13s}  ({args.model})  description")
    for name in bundled_profiles():
        profile = load_profile(name)
        d = policy_structure(profile, args.model)
        print(f"{name:18s} {d.width:6.4g} {d.budget_macs:13,} {d.exported_macs:13,}  {profile.description}")
    return 0
