"""Reproduce the paper's comparisons: MCE-PL vs baselines, ablations, DSLTH, node heterogeneity.

The command line of ``python benchmarks/reproduce.py`` (the first line above is its ``--help``
description): choose the preset's experiments, run them (or only re-render), archive, write the report.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from benchmarks.reproduction import ROOT
from benchmarks.reproduction.configs import base_config
from benchmarks.reproduction.experiments import Experiment, experiments
from benchmarks.reproduction.report import write_report
from benchmarks.reproduction.runner import run_all
from benchmarks.reproduction.runs import archive
from edge_mcepl.config import config_from_dict
from edge_mcepl.errors import UserError
from edge_mcepl.nn.device import resolve_device


def build_parser() -> argparse.ArgumentParser:
    """The options, documented in README's "Reproducing the paper"."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="reduced setting, ≤ 30 min on 2 CPU cores")
    mode.add_argument("--full", action="store_true", help="the paper setting (long CPU run or a GPU box)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", type=Path, default=None, help="raw results folder (default runs/reproduce-<preset>)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--device", default="cpu", help="where each run computes: cpu (default), cuda or cuda:N")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="experiments run at once, each in its own process (default: 2, or 1 on one core)")
    parser.add_argument("--rounds", type=int, default=None, help="override the preset's rounds")
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--only", default=None, help="comma-separated experiment keys to run (default: all)")
    parser.add_argument("--rerun", action="store_true", help="redo finished runs instead of reusing them")
    parser.add_argument("--report-only", action="store_true", help="only regenerate the report from existing runs")
    parser.add_argument("--archive", type=Path, default=None,
                        help="also copy finished runs (metrics gzipped, no masks) to this folder, e.g. results/")
    return parser


def select(exps: list[Experiment], only: str | None) -> list[Experiment]:
    """The experiments ``--only`` names, in the order given (all of them without it)."""
    if not only:
        return exps
    wanted = list(dict.fromkeys(only.split(",")))  # run in the order given
    by_key = {e.key: e for e in exps}
    unknown = [k for k in wanted if k not in by_key]
    if unknown:
        raise SystemExit(f"unknown experiment(s): {', '.join(unknown)}")
    return [by_key[k] for k in wanted]


def main(argv: list[str] | None = None) -> None:
    """Run (unless ``--report-only``), archive (with ``--archive``), then write the report."""
    args = build_parser().parse_args(argv)
    preset = "full" if args.full else "quick"
    out = args.out or ROOT / "runs" / f"reproduce-{preset}"
    raw, reduction = base_config(preset, args)
    exps = experiments(preset)
    selected = select(exps, args.only)
    command = "python benchmarks/reproduce.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                       else sys.argv[1:]))
    if not args.report_only:
        try:  # fail fast, before any run starts: a bad or absent device is a user mistake
            resolve_device(config_from_dict(raw, "base config").device)
        except UserError as exc:
            raise SystemExit(f"reproduce.py: {exc}") from None
        run_all(selected, raw, out, args.rerun, command, args.jobs)
    if args.archive:
        archive(exps, out, args.archive / f"reproduce-{preset}")
        out = args.archive / f"reproduce-{preset}"  # the report cites the archived (committable) copy
    args.docs.mkdir(parents=True, exist_ok=True)
    path = write_report(preset, exps, out, args.docs, command, reduction)
    print(f"wrote {path}")
