"""Config building: each preset's base config (and the reduction the report states), plus an experiment's overrides.

Apart from the experiment table because the base depends on the command line (data folder, threads,
device, rounds) while the table does not; apart from the runner because the tests validate every
experiment's config without running it.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.reproduction import ROOT
from edge_mcepl.config import load_config
from edge_mcepl.validation import set_dotted


def base_config(preset: str, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """(raw config mapping, the reduction stated in the report)."""
    if preset == "full":
        cfg = load_config(ROOT / "examples" / "paper.yaml").to_dict()
        cfg["data"]["data_dir"] = args.data_dir
        cfg["threads"], cfg["device"] = args.threads, args.device
        if args.rounds:
            cfg["rounds"] = args.rounds
        cfg["eval_every"] = args.eval_every or 20
        return cfg, ("none in the setting — examples/paper.yaml (20 agents, reference graph and partitions); the "
                     "paper runs T = 400 rounds; a run given fewer (CPU budget) shows it in its rounds column, and "
                     "one cut short (a GPU lease ending) is marked 'stopped' there")
    cfg = {
        "name": "quick", "seed": 1234, "agents": 6, "rounds": args.rounds or 50, "eval_every": args.eval_every or 25,
        "model": "alexnet-cifar", "threads": args.threads, "device": args.device,
        "data": {"dataset": "cifar10", "data_dir": args.data_dir, "partition": "classes", "classes_per_agent": 4,
                 "data_fraction": 0.2},
        "topology": {"kind": "k-regular", "k": 3},
        "retention": {"conv": 0.3, "linear": 0.9},
        "algorithm": {"preset": "reference"},
    }
    reduction = (f"6 agents (not 20) on a random 3-regular graph (not the reference graph), {cfg['rounds']} rounds "
                 f"(not 400), seeded 4-class label-skew partition (not the reference shards), 4-class setting only; "
                 "AlexNet-CIFAR, real CIFAR-10, data_fraction 0.2, reference hyper-parameters otherwise")
    return cfg, reduction


def with_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with an experiment's dotted-key ``overrides`` set (a copy: the base mapping is shared by experiments)."""
    # Preset values must win over the base's explicit algorithm fields only when asked for: the base
    # mapping of --full is a fully expanded config, so drop its preset-controlled keys when switching.
    if "algorithm.preset" in overrides:
        kept = {k: v for k, v in raw["algorithm"].items() if k not in ("group_lasso", "min_kept_per_filter")}
        raw = {**raw, "algorithm": kept}
    for dotted, value in overrides.items():
        raw = set_dotted(raw, dotted, value)
    return raw
