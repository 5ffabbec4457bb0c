"""Where collaboration helps and where it hurts (issue 15): a label-skew sweep, MCE-PL vs local-only vs train alone.

For every setting — ``K`` classes per agent (``classes`` partition) and Dirichlet ``α``
(``dirichlet`` partition) — three runs of one base config (the preset under test): MCE-PL as
configured, the same rule with no neighbours (``local_only``: the collaboration's contribution)
and dense weight training of the same init with no neighbours (``weight_training``: what a device
gets on its own), with the same augmentation and step-size schedule. Every agent keeps
``--shard-fraction`` of its class shards (0.2: the paper setting's ≈ 500 images per agent) and
holds out the base's validation split; each run is read at **its own best validation round**
(the stopping round is chosen on validation, never on test), and the test accuracy there is
reported. Differences come with their paired standard error over the agents.

Runs are ordinary ``edge-mcepl simulate`` processes (``run_configs.py``: ``--jobs`` at once,
checkpointed, resumed when a folder holds an unfinished one); finished runs are reused. ``--report-only`` re-renders
``--doc`` and ``--plot`` from the run folders (live, or an ``--archive`` copy).

Usage::

    .venv/bin/python benchmarks/skew_sweep.py --base results/ablate/cosine-lr20-400.yaml --rounds 100 \\
        --out runs/skew --jobs 2 --doc docs/skew.md --plot docs/skew.png
"""

from __future__ import annotations

import argparse
import gzip
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ablation_table import paired_se  # noqa: E402
from benchmarks.run_configs import finished, run_all  # noqa: E402
from edge_mcepl.config import config_from_dict, load_config  # noqa: E402
from edge_mcepl.errors import UserError  # noqa: E402
from edge_mcepl.metrics import read_metrics  # noqa: E402
from edge_mcepl.validation import set_dotted  # noqa: E402

# method → (label, the overrides that make it from the base config)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "mcepl": ("MCE-PL", {}),
    "local-only": ("local-only masks (same preset, no neighbours)", {"algorithm.name": "local_only"}),
    "train-alone": ("train alone (dense weights, no neighbours)", {"algorithm.name": "weight_training"}),
}
PAPER_FILES = ("classes_file", "train_counts_file", "test_counts_file")


@dataclass(frozen=True)
class Setting:
    """One label-skew setting: ``classes`` with K classes per agent, or ``dirichlet`` with α."""

    partition: str
    value: float

    @property
    def key(self) -> str:
        return f"classes{self.value:g}" if self.partition == "classes" else f"dirichlet{self.value:g}"

    @property
    def label(self) -> str:
        return f"{self.value:g} classes per agent" if self.partition == "classes" else f"Dirichlet α = {self.value:g}"

    def overrides(self, shard_fraction: float) -> dict[str, Any]:
        knob = ("data.classes_per_agent", int(self.value)) if self.partition == "classes" else \
            ("data.dirichlet_alpha", self.value)
        return {"data.partition": self.partition, knob[0]: knob[1], "data.shard_fraction": shard_fraction,
                **{f"data.{name}": None for name in PAPER_FILES}}


def settings(classes: list[int], alphas: list[float]) -> list[Setting]:
    return [Setting("classes", k) for k in classes] + [Setting("dirichlet", a) for a in alphas]


def run_config(base: dict[str, Any], setting: Setting, method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The base config with the setting's partition and the method's rule (validated: a bad base fails here)."""
    raw = dict(base)
    raw["data"] = {k: v for k, v in raw["data"].items() if k != "data_fraction"}  # the paper partition's share
    for dotted, value in {**setting.overrides(args.shard_fraction), **METHODS[method][1]}.items():
        raw = set_dotted(raw, dotted, value)
    raw["name"] = f"skew-{setting.key}-{method}"
    if args.rounds:
        raw["rounds"] = args.rounds
    if args.eval_every:
        raw["eval_every"] = args.eval_every
    if args.device:
        raw["device"] = args.device
    return config_from_dict(raw, f"{setting.key}/{method}").to_dict()


def best_validation_point(run_dir: Path) -> dict[str, Any]:
    """The run's best mean validation round, with every agent's test accuracy there."""
    path = run_dir / "metrics.jsonl"
    rows = [r for r in read_metrics(path if path.exists() else run_dir / "metrics.jsonl.gz") if "accuracy" in r]
    if not rows or any("val_accuracy" not in r for r in rows):
        raise SystemExit(f"skew_sweep: {run_dir} has no validation accuracy — the base needs "
                         "data.validation_fraction > 0")
    by_round: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_round.setdefault(r["round"], []).append(r)
    best = max(sorted(by_round), key=lambda t: statistics.mean(r["val_accuracy"] for r in by_round[t]))
    at = sorted(by_round[best], key=lambda r: r["agent"])
    return {"round": best, "rounds": max(by_round), "val": statistics.mean(r["val_accuracy"] for r in at),
            "test": statistics.mean(r["accuracy"] for r in at), "tests": [r["accuracy"] for r in at]}


def report(points: dict[tuple[str, str], dict[str, Any]], sweep: list[Setting], methods: list[str],
           command: str, base: Path, shard_fraction: float) -> str:
    header = " | ".join(f"{METHODS[m][0]}: test (val) @ round" for m in methods)
    deltas = [m for m in ("local-only", "train-alone") if m in methods and "mcepl" in methods]
    lines = [
        "# Where collaboration helps and where it hurts: label-skew sweep", "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')} — do not edit by hand.", "",
        f"Base config (the preset under test): `{base}`; every setting changes only the partition (each agent "
        f"keeps {shard_fraction:g} of its class shards) and every method only `algorithm.name`. Each run is read "
        "at its own best **validation** round; the test accuracy there is reported (mean over agents, %). "
        "Δ = MCE-PL − the other method, test, ± the paired standard error over the agents.", "",
        f"| setting | {header} | " + " | ".join(f"Δ vs {m}" for m in deltas) + " |",
        "|---|" + "---:|" * (len(methods) + len(deltas)),
    ]
    for s in sweep:
        cells = []
        for m in methods:
            p = points.get((s.key, m))
            cells.append("—" if p is None else f"{100 * p['test']:.2f} ({100 * p['val']:.2f}) @ {p['round']}"
                         + ("" if p["round"] == p["rounds"] else f"/{p['rounds']}"))
        for m in deltas:
            a, b = points.get((s.key, "mcepl")), points.get((s.key, m))
            cells.append("—" if a is None or b is None else
                         f"{100 * (a['test'] - b['test']):+.2f} ± {100 * paired_se(b['tests'], a['tests']):.2f}")
        lines.append(f"| {s.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(points: dict[tuple[str, str], dict[str, Any]], sweep: list[Setting], methods: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, partition, xlabel in ((axes[0], "classes", "classes per agent"), (axes[1], "dirichlet", "Dirichlet α")):
        for m in methods:
            xs = [(s.value, 100 * points[(s.key, m)]["test"]) for s in sweep
                  if s.partition == partition and (s.key, m) in points]
            if xs:
                ax.plot(*zip(*xs), marker="o", label=METHODS[m][0])
        ax.set(xlabel=xlabel, ylabel="test accuracy at best val round (%)")
        if partition == "dirichlet":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("MCE-PL vs local-only masks vs training alone, by label skew")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def archive(run_dir: Path, dest: Path) -> None:
    """The run's config, summary and metrics (gzipped, mtime 0), small enough to commit."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "summary.txt"):
        shutil.copyfile(run_dir / name, dest / name)
    (dest / "metrics.jsonl.gz").write_bytes(gzip.compress((run_dir / "metrics.jsonl").read_bytes(), mtime=0))


def numbers(text: str, kind: type) -> list:
    try:
        return [kind(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the preset's lab config (with a validation split)")
    ap.add_argument("--classes", type=lambda t: numbers(t, int), default=[2, 3, 4, 5, 10])
    ap.add_argument("--alphas", type=lambda t: numbers(t, float), default=[0.05, 0.1, 0.3, 1.0, 10.0])
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of: {', '.join(METHODS)}")
    ap.add_argument("--shard-fraction", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, help="override the base's rounds")
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", help="cpu or cuda / cuda:N for every run (default: the base's)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each its own process)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "skew")
    ap.add_argument("--report-only", action="store_true", help="only re-render from the run folders under --out")
    ap.add_argument("--archive", type=Path, help="copy finished runs (config, summary, metrics.jsonl.gz) here")
    ap.add_argument("--doc", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args(argv)
    methods = list(dict.fromkeys(args.methods.split(",")))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    sweep = settings(args.classes, args.alphas)
    runs = [(s, m) for s in sweep for m in methods]
    if not args.report_only:
        try:
            base = load_config(args.base).to_dict()
            configs = {(s.key, m): run_config(base, s, m, args) for s, m in runs}
        except UserError as exc:
            raise SystemExit(f"skew_sweep: {exc}") from None
        (args.out / "configs").mkdir(parents=True, exist_ok=True)
        jobs = []
        for (key, m), config in configs.items():
            path = args.out / "configs" / f"{key}-{m}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            jobs.append((path, args.out / f"{key}-{m}"))
        run_all(jobs, args.jobs, args.threads)
    points = {}
    for s, m in runs:
        run_dir = args.out / f"{s.key}-{m}"
        if finished(run_dir) or (run_dir / "metrics.jsonl.gz").exists():
            points[(s.key, m)] = best_validation_point(run_dir)
            if args.archive and (run_dir / "metrics.jsonl").exists():
                archive(run_dir, args.archive / run_dir.name)
    command = "python benchmarks/skew_sweep.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = report(points, sweep, methods, command, args.base, args.shard_fraction)
    if args.doc:
        args.doc.write_text(text)
    if args.plot and points:
        plot(points, sweep, methods, args.plot)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
