"""Reproduce the paper's comparisons: MCE-PL vs baselines, ablations, DSLTH, node heterogeneity.

Every experiment is an ordinary simulator run of the same harness (same data, partitions,
topology, evaluation; bytes counted from the real encoded messages), differing only in config
overrides — mostly ``algorithm.name`` (mcepl | local_only | dsgd | dispfl | weight_training |
mask_averaging). Each run writes its raw per-(round, agent) JSONL to
``<out>/<experiment>/metrics.jsonl`` (plus its ``config.yaml``); the report (``docs/results.md``
for ``--full``, ``docs/results-quick.md`` for ``--quick``) and its PNG plots are then regenerated
from those files only, so no number in the report is typed by hand. Finished runs are reused
(``--rerun`` to redo them), so an interrupted ``--full`` resumes where it stopped.

Usage:
    python benchmarks/reproduce.py --quick             # ≤ 30 min on 2 CPU cores (reduced, stated)
    python benchmarks/reproduce.py --full              # the paper setting (examples/paper.yaml)
    python benchmarks/reproduce.py --quick --report-only   # re-render docs from existing runs
    python benchmarks/reproduce.py --full --archive results    # + copy runs (no masks) to results/
    python benchmarks/reproduce.py --full --report-only --out results/reproduce-full   # from the archive
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402

from edge_mcepl.config import config_from_dict, load_config  # noqa: E402
from edge_mcepl.errors import UserError  # noqa: E402
from edge_mcepl.simulator import Simulator  # noqa: E402
from edge_mcepl.metrics import read_metrics  # noqa: E402
from edge_mcepl.nn.device import describe_device, resolve_device  # noqa: E402
from edge_mcepl.profiles import load_profile, policy_retention  # noqa: E402
from edge_mcepl.validation import set_dotted  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference" / "mcepl-paper-setting"


@dataclass(frozen=True)
class Experiment:
    key: str  # folder name and plot label
    group: str  # report section
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)


def paper_partition(k: int) -> dict[str, Any]:
    return {"data.classes_file": str(REFERENCE / f"classes_per_agent_{k}.txt"),
            "data.train_counts_file": str(REFERENCE / f"train_counts_{k}.txt"),
            "data.test_counts_file": str(REFERENCE / f"test_counts_{k}.txt")}


# The paper gives no step size for the weight-based baselines. 0.2 beat the config default 0.05 for
# both DSGD and Dis-PFL in the quick setting (the "sweep" table), so the main tables use it.
BASELINE_LR = 0.2


def partition(preset: str, k: int) -> dict[str, Any]:
    """k classes per agent: the reference shards (full) or a seeded label-skew partition (quick)."""
    return paper_partition(k) if preset == "full" else {"data.classes_per_agent": k}


PROFILE_MIX = ("rpi4", "rpi5", "jetson-orin-nano", "laptop", "gpu-workstation")


def profile_mix(model: str = "alexnet-cifar") -> list[tuple[str, float]]:
    """(profile, conv retention) of a lab mixing the bundled device profiles, agents assigned
    round-robin — each ratio is what ``edge-mcepl join --profile NAME`` would pick (its policy)."""
    return [(name, policy_retention(load_profile(name), model).retention) for name in PROFILE_MIX]


# Full preset: experiment → its rerun on a second machine (mcepl-k4's name predates the "-rerun" keys).
RERUNS = {"mcepl-k3": "mcepl-k3-rerun", "mcepl-k5": "mcepl-k5-rerun", "local-only-k4": "local-only-k4-rerun",
          "hetero-profiles": "hetero-profiles-rerun", "mcepl-k4": "mcepl-k4-again"}


def experiments(preset: str) -> list[Experiment]:
    """The experiment list of a preset. ``quick`` keeps the 4-class setting only."""
    ks = (3, 4, 5) if preset == "full" else (4,)
    mix = profile_mix()
    out = []
    for k in ks:
        part = partition(preset, k)
        out += [
            Experiment(f"mcepl-k{k}", f"main-k{k}", "MCE-PL", part),
            Experiment(f"dsgd-k{k}", f"main-k{k}", f"DSGD (Metropolis, fp32, weight_lr {BASELINE_LR:g})",
                       {**part, "algorithm.name": "dsgd", "algorithm.weight_lr": BASELINE_LR}),
            Experiment(f"dispfl-k{k}", f"main-k{k}", f"Dis-PFL (masked fp32, weight_lr {BASELINE_LR:g})",
                       {**part, "algorithm.name": "dispfl", "algorithm.weight_lr": BASELINE_LR}),
            Experiment(f"local-only-k{k}", f"main-k{k}", "Local-only masks", {**part, "algorithm.name": "local_only"}),
        ]
    # Same learning as mcepl-k4 bit for bit (tested); only the bytes on the wire differ.
    out.append(Experiment("mcepl-k4-rice", "main-k4", "MCE-PL, Rice-coded masks",
                          {**partition(preset, 4), "algorithm.mask_codec": "rice"}))
    out += [
        Experiment("ablation-no-agg-tensor", "ablation", "MCE-PL, no aggregation tensor (m̄ ≡ 0 in y)",
                   {"algorithm.aggregation_tensor": False}),
        Experiment("ablation-no-consensus", "ablation", "MCE-PL, no consensus step (η₂ = 0)",
                   {"algorithm.consensus_lr": 0.0}),
        Experiment("ablation-mask-averaging", "ablation", "Direct averaging of binary masks (vote), no aggregation tensor",
                   {"algorithm.name": "mask_averaging"}),
        Experiment("ablation-filter-drop", "ablation", "MCE-PL + filter drop (structured preset)",
                   {"algorithm.preset": "structured"}),
        Experiment("ablation-group-lasso", "ablation", "MCE-PL + filter drop + group lasso λ=1e-3",
                   {"algorithm.preset": "structured", "algorithm.group_lasso": 1e-3}),
        Experiment("dslth-weights-dense", "dslth", "Weight training, dense, same init, no neighbours",
                   {"algorithm.name": "weight_training"}),
        Experiment("dslth-weights-pruned", "dslth", "Weight training, magnitude-pruned to MCE-PL density",
                   {"algorithm.name": "weight_training", "algorithm.prune": True}),
        Experiment("hetero-profiles", "hetero",
                   "MCE-PL, device-profile mix: conv retention " + " / ".join(f"{n} {r:g}" for n, r in mix),
                   {"retention.conv": [r for _, r in mix]}),
    ]
    if preset == "quick":
        # Why the baselines run at BASELINE_LR: the same runs at the config default weight_lr.
        out += [Experiment(f"sweep-{name}-lr{lr:g}", "sweep", f"{label}, weight_lr {lr:g}",
                           {**partition(preset, 4), "algorithm.name": name, "algorithm.weight_lr": lr})
                for name, label in (("dsgd", "DSGD"), ("dispfl", "Dis-PFL")) for lr in (0.05,)]
    if preset == "full":
        # Why MCE-PL falls short of the paper's headline: one knob at a time, everything else as mcepl-k4.
        out += [
            Experiment("investigate-data-full", "investigation", "MCE-PL, full shard counts (data_fraction 1.0)",
                       {"data.data_fraction": 1.0}),
            Experiment("investigate-retention-0.5", "investigation", "MCE-PL, conv retention 0.5 for every agent",
                       {"retention.conv": 0.5}),
            Experiment("investigate-local-steps-2", "investigation", "MCE-PL, 2 local steps per round",
                       {"algorithm.local_steps": 2}),
            Experiment("investigate-local-steps-4", "investigation", "MCE-PL, 4 local steps per round",
                       {"algorithm.local_steps": 4}),
            Experiment("investigate-per-agent-scores", "investigation",
                       "MCE-PL, each agent's scores from its own seed", {"per_agent_scores": True}),
        ]
        # The same configs again on other hardware (CPU vs GPU, see the run-times table): how far a
        # result moves with the kernels' floating-point order — the spread to read the tables with.
        out += [Experiment(RERUNS[e.key], "rerun", f"{e.label} — same config, other hardware", e.overrides)
                for e in out if e.key in RERUNS]
    return out


REPORTS = {"full": "results.md", "quick": "results-quick.md"}  # under docs/

GROUP_TITLES = {
    "ablation": ("Ablations", ["mcepl-k4"]),
    "dslth": ("DSLTH: mask-only learning vs weight training on the same init", ["mcepl-k4", "local-only-k4"]),
    "hetero": ("Node heterogeneity: mixed vs homogeneous retention", ["mcepl-k4", "investigate-retention-0.5"]),
    "sweep": ("Baseline step sizes: the main tables' weight_lr vs the config default", ["dsgd-k4", "dispfl-k4"]),
    "investigation": ("Investigation: what limits MCE-PL's accuracy", ["mcepl-k4", "local-only-k4"]),
    "rerun": ("The same config on other hardware (CPU vs GPU)", list(RERUNS)),
}


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


def run_experiment(exp: Experiment, raw: dict[str, Any], run_dir: Path, rerun: bool, command: str = "") -> None:
    config = config_from_dict(with_overrides(raw, exp.overrides), f"reproduce:{exp.key}")
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists() and not rerun:
        rows = read_metrics(metrics)
        if rows and max(r["round"] for r in rows) == config.rounds - 1:
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


# ----------------------------------------------------------------------------------------- report


# A run that was cut short is reported only when someone states why, in this file (one line):
# it is then shown up to its last evaluated round, marked as stopped. Any other unfinished run
# (one still going, say) is left out.
INTERRUPTED = "interrupted.txt"


def reportable(run_dir: Path) -> bool:
    """Finished (``wall_seconds.txt`` is written after the last round) or explicitly marked as stopped."""
    return (run_dir / "wall_seconds.txt").exists() or (run_dir / INTERRUPTED).exists()


LOSS_WINDOW = 20  # rounds over which the reported training loss is averaged (one batch per round is noisy)


ARCHIVED_FILES = ("config.yaml", "command.txt", "wall_seconds.txt", "hardware.txt", INTERRUPTED)  # + metrics, gzipped


def metrics_path(run_dir: Path) -> Path:
    """A run's metrics: the live ``metrics.jsonl`` or the archived ``metrics.jsonl.gz``."""
    live = run_dir / "metrics.jsonl"
    return live if live.exists() else run_dir / "metrics.jsonl.gz"


def archive(exps: list[Experiment], out: Path, dest: Path) -> None:
    """Copy every finished run's small files (metrics gzipped) to ``dest``: a report source that can
    be committed, so anyone can regenerate the report without rerunning (masks are left out)."""
    for e in exps:
        src = out / e.key
        if not reportable(src):
            continue
        target = dest / e.key
        target.mkdir(parents=True, exist_ok=True)
        for name in ARCHIVED_FILES:
            if (src / name).exists():
                shutil.copyfile(src / name, target / name)
        # mtime 0: archiving the same run twice gives the same bytes (no spurious diffs in git).
        (target / "metrics.jsonl.gz").write_bytes(gzip.compress((src / "metrics.jsonl").read_bytes(), mtime=0))


def summarize(run_dir: Path) -> dict[str, Any]:
    rows = read_metrics(metrics_path(run_dir))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    by_round: dict[int, list[dict]] = {}
    for r in rows:
        by_round.setdefault(r["round"], []).append(r)
    # Up to the last evaluated round: a stopped run's later rounds (maybe half-written) are not counted.
    last = max(t for t in by_round if any("accuracy" in r for r in by_round[t]))
    by_round = {t: by_round[t] for t in by_round if t <= last}
    curve, cumulative = [], 0
    for t in sorted(by_round):
        cumulative += sum(r["bytes_sent"] for r in by_round[t])
        accs = [r["accuracy"] for r in by_round[t] if "accuracy" in r]
        if accs:
            curve.append({"round": t + 1, "acc": statistics.mean(accs), "min": min(accs), "max": max(accs),
                          "cum_bytes": cumulative})
    final = by_round[last]
    accs = [r["accuracy"] for r in final]
    per_round = [sum(r["bytes_sent"] for r in by_round[t]) for t in sorted(by_round)]
    live = [sum(r["live_filters"][: r["conv_layers"]]) for r in final]
    wall = run_dir / "wall_seconds.txt"
    mean_loss = {t + 1: statistics.mean(r["loss"] for r in by_round[t]) for t in sorted(by_round)}
    stopped = run_dir / INTERRUPTED
    return {
        "mean_loss": mean_loss, "train_loss": train_loss_at({"mean_loss": mean_loss}, last + 1),
        "config": config, "curve": curve, "rounds_run": last + 1, "mean": statistics.mean(accs),
        "std": statistics.pstdev(accs), "min": min(accs), "max": max(accs),
        "bytes_per_round": statistics.mean(per_round), "cum_bytes": sum(per_round),
        "density": statistics.mean(r["density"] for r in final), "live_conv_filters": statistics.mean(live),
        "conv_filters": sum(final[0]["filters"][: final[0]["conv_layers"]]),
        "message_bytes": max((r["bytes_sent"] // max(1, len_neighbours(r)) for r in final), default=0),
        "wall_s": float(wall.read_text()) if wall.exists() else None,
        "stopped": None if wall.exists() else stopped.read_text().strip(),
    }


def len_neighbours(row: dict) -> int:
    return row.get("neighbours_heard", 0)


def train_loss_at(summary: dict[str, Any], round: int) -> float:
    """Mean training loss over the LOSS_WINDOW rounds ending at ``round`` (one batch a round is noisy)."""
    window = [v for t, v in summary["mean_loss"].items() if round - LOSS_WINDOW < t <= round]
    return statistics.mean(window)


def rounds_cell(summary: dict[str, Any]) -> str:
    """Rounds run, and for a stopped run how many were planned (its reason is in the run-times table)."""
    if summary["stopped"] is None:
        return str(summary["rounds_run"])
    return f"{summary['rounds_run']} (stopped; {summary['config']['rounds']} planned)"


def wall_cell(summary: dict[str, Any]) -> str:
    return f"{summary['wall_s']}" if summary["stopped"] is None else f"— (stopped: {summary['stopped']})"


def accuracy_at(summary: dict[str, Any], round: int) -> float | None:
    """Mean accuracy at an evaluated round (None if that round was not evaluated)."""
    return next((p["acc"] for p in summary["curve"] if p["round"] == round), None)


def table(exps: list[Experiment], results: dict[str, dict], dsgd_key: str | None, keyed: bool = False) -> list[str]:
    """One row per method (named by experiment key too when ``keyed``). Runs of different lengths are
    also compared at the last round all of them evaluated."""
    shown = [results[e.key] for e in exps if e.key in results]
    common = common_round(shown) if shown else None
    mixed = common is not None and any(s["rounds_run"] != common for s in shown)
    at_common = f" acc. @ round {common} |" if mixed else ""
    lines = [f"| method | rounds | mean acc. ± std (over agents) |{at_common} min | max | MB / round (network) | "
             "cumulative MB | bytes per message | fewer bytes than DSGD | mask density | live conv filters | "
             f"train loss (last {LOSS_WINDOW} rounds) |",
             "|---|---:|---:|" + ("---:|" if mixed else "") + "---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ref = results.get(dsgd_key) if dsgd_key else None
    for e in exps:
        s = results.get(e.key)
        name = f"{e.key}: {e.label}" if keyed else e.label
        if s is None:
            lines.append(f"| {name} | not run (or unfinished) |" + " |" * (11 + mixed))
            continue
        ratio = (f"{ref['bytes_per_round'] / s['bytes_per_round']:.2f}×" if ref and s["bytes_per_round"]
                 else ("— (sends nothing)" if not s["bytes_per_round"] else "—"))
        common_cell = ""
        if mixed:
            acc = accuracy_at(s, common)
            common_cell = f" {100 * acc:.2f} % |" if acc is not None else " — |"
        lines.append(
            f"| {name} | {rounds_cell(s)} | {100 * s['mean']:.2f} % ± {100 * s['std']:.2f} |{common_cell} "
            f"{100 * s['min']:.2f} % | {100 * s['max']:.2f} % | {s['bytes_per_round'] / 1e6:.3f} | "
            f"{s['cum_bytes'] / 1e6:.1f} | {s['message_bytes']:,} | {ratio} | {s['density']:.3f} | "
            f"{s['live_conv_filters']:.1f} / {s['conv_filters']} | {s['train_loss']:.3f} |")
    return lines


PAPER_HEADLINE = 0.7503  # the paper's "up to 75.03 %" mean personalized accuracy (its best setting)


def compare(results: dict[str, dict], a: str, b: str) -> tuple[int, float] | None:
    """(common round, accuracy of a − accuracy of b there), or None when either run is missing."""
    if a not in results or b not in results:
        return None
    common = common_round([results[a], results[b]])
    return None if common is None else (common, accuracy_at(results[a], common) - accuracy_at(results[b], common))


def common_round(summaries: list[dict[str, Any]]) -> int | None:
    """The last round every run evaluated (runs differ in length and in evaluation interval)."""
    rounds = set.intersection(*({p["round"] for p in s["curve"]} for s in summaries))
    return max(rounds, default=None)


COLLAPSE = 0.05  # a run that ends this far below its best evaluated accuracy is called out (unstable)


def findings(exps: list[Experiment], results: dict[str, dict]) -> list[str]:
    """The report's headline comparisons, computed from the runs (never typed)."""
    labels = {e.key: e.label for e in exps}
    lines = []
    if "mcepl-k4" in results:
        s = results["mcepl-k4"]
        lines.append(f"- MCE-PL, 4 classes per agent: **{100 * s['mean']:.2f} %** at round {s['rounds_run']} "
                     f"(the paper's headline: up to {100 * PAPER_HEADLINE:.2f} %; "
                     f"{'met' if s['mean'] >= PAPER_HEADLINE else 'not met'}), training loss "
                     f"{s['train_loss']:.3f} over its last {LOSS_WINDOW} rounds.")
    for e in exps:
        # Each main table against its own MCE-PL run, every other section against the 4-class one.
        ref = f"mcepl-k{e.group[-1]}" if e.group.startswith("main") else "mcepl-k4"
        if e.key == ref or e.group == "rerun" or e.key == "mcepl-k4-rice":
            continue
        c = compare(results, e.key, ref)
        if c:
            k = f"{ref[-1]} classes, " if e.group.startswith("main") else ""
            lines.append(f"- {k}{e.label}: {100 * c[1]:+.2f} points vs MCE-PL at round {c[0]} (training loss "
                         f"{train_loss_at(results[e.key], c[0]):.3f} vs {train_loss_at(results[ref], c[0]):.3f}).")
    for key, again in RERUNS.items():
        c = compare(results, again, key)
        if c:
            lines.append(f"- Same config, other hardware ({key}): {100 * c[1]:+.2f} points at round {c[0]} — "
                         "same seed, only the kernels' floating-point order differs.")
    for key in ("mcepl-k4", "mcepl-k4-rice"):
        if key in results and "dsgd-k4" in results and results[key]["bytes_per_round"]:
            ratio = results["dsgd-k4"]["bytes_per_round"] / results[key]["bytes_per_round"]
            lines.append(f"- {labels[key]} sends {ratio:.2f}× fewer bytes per round than DSGD "
                         f"({'≥' if ratio >= 32 else '<'} 32×).")
    for e in exps:
        s = results.get(e.key)
        best = max(s["curve"], key=lambda p: p["acc"]) if s else None
        if best and best["acc"] - s["mean"] > COLLAPSE:
            lines.append(f"- {e.key} ends {100 * (best['acc'] - s['mean']):.2f} points below its best: "
                         f"{100 * best['acc']:.2f} % at round {best['round']}, "
                         f"{100 * s['mean']:.2f} % at round {s['rounds_run']} (training loss "
                         f"{train_loss_at(s, best['round']):.3g} → {s['train_loss']:.3g}).")
    return ["## Findings (computed from the runs below)", "", *lines, ""] if lines else []


def trajectory(label: str, s: dict[str, Any]) -> list[str]:
    """Every evaluated round of one run: how accuracy and cumulative bytes grow."""
    lines = [f"| round | {label}: mean acc. | min | max | cumulative MB |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {p['round']} | {100 * p['acc']:.2f} % | {100 * p['min']:.2f} % | {100 * p['max']:.2f} % | "
              f"{p['cum_bytes'] / 1e6:.1f} |" for p in s["curve"]]
    return lines


def plot(exps: list[Experiment], results: dict[str, dict], path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots (pip install matplotlib)")
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for e in exps:
        s = results.get(e.key)
        if s is None:
            continue
        rounds = [p["round"] for p in s["curve"]]
        accs = [100 * p["acc"] for p in s["curve"]]
        ax1.plot(rounds, accs, marker="o", label=e.label)
        if s["cum_bytes"]:
            ax2.plot([p["cum_bytes"] / 1e6 for p in s["curve"]], accs, marker="o", label=e.label)
    ax1.set(xlabel="round", ylabel="mean personalized accuracy (%)", title=title)
    ax2.set(xlabel="cumulative network bytes (MB, log)", ylabel="mean personalized accuracy (%)",
            title="accuracy vs bytes (methods that send)")
    ax2.set_xscale("log")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


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


def run_file(run_dir: Path, name: str) -> str:
    """A run's one-line record (command, hardware), or — when it was not recorded."""
    path = run_dir / name
    return path.read_text().strip() if path.exists() else "—"


def write_report(preset: str, exps: list[Experiment], out: Path, docs: Path, command: str,
                 reduction: str) -> Path:
    docs.mkdir(parents=True, exist_ok=True)
    for stale in docs.glob(f"results-{preset}-*.png"):  # the plots always match the report
        stale.unlink()
    results = {e.key: summarize(out / e.key) for e in exps if reportable(out / e.key)}
    if not results:
        raise SystemExit(f"no finished runs under {out}")
    any_run = next(iter(results.values()))
    cfg = any_run["config"]

    def footer(keys: list[str]) -> list[str]:
        """What every table is read with: its runs' hardware and evaluation interval, seeds, sources."""
        keys = [k for k in keys if k in results]
        machines = sorted({run_file(out / k, "hardware.txt") for k in keys})
        every = sorted({results[k]["config"]["eval_every"] for k in keys})
        return [
            "",
            f"Report: `{command}`; each run's own command and hardware are in the run-times table at the end.  ",
            f"Hardware: {'; '.join(machines)}.  ",
            f"Seed {cfg['seed']} (weights, scores, partitions, graph, batches); model {cfg['model']}; "
            f"{cfg['agents']} agents; topology `{cfg['topology']['kind']}`; rounds per run in each table; "
            f"evaluation every {' or '.join(map(str, every))} rounds.  ",
            f"Raw results: `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}/<experiment>/` "
            "(`metrics.jsonl`, gzipped when archived; `config.yaml`; `command.txt`; `hardware.txt`).",
            "",
        ]

    groups: dict[str, list[Experiment]] = {}
    for e in exps:
        groups.setdefault(e.group, []).append(e)
    by_key = {e.key: e for e in exps}
    doc = [
        f"# Reproduction report ({preset})", "",
        "Generated by `benchmarks/reproduce.py` from the runs' raw `metrics.jsonl` — do not edit by hand.", "",
        f"**Reduction from the paper setting:** {reduction}.", "",
        "Metric: unweighted mean over agents of each agent's accuracy on all test images of its own classes "
        "(spec §8), at the last evaluated round; ± is the population standard deviation over agents. Bytes are "
        "the exact encoded messages (mask codec for MCE-PL, fp32 codec for DSGD, headers and tags included) × "
        "neighbours, summed over agents; local-only and weight-training baselines send nothing. "
        "Live conv filters: conv output filters with at least one kept weight, mean over agents.", "",
        *findings(exps, results),
    ]
    for group, members in groups.items():
        if group.startswith("main"):
            k = group.split("-k")[1]
            title, extra = f"Main table: {k} classes per agent", []
        else:
            title, extra_keys = GROUP_TITLES[group]
            extra = [by_key[k] for k in extra_keys if k in by_key]
        shown = extra + members
        if not any(e.key in results for e in members):
            elsewhere = {"full": " The reduced setting's report, [results-quick.md](results-quick.md), has its own runs.",
                         "quick": ""}[preset]
            doc += [f"## {title}", "", "Not run yet: no finished run of this section's experiments "
                    f"({', '.join(e.key for e in members)}).{elsewhere}", ""]
            continue
        dsgd_key = next((e.key for e in exps if e.group == (group if group.startswith("main") else "main-k4")
                         and e.overrides.get("algorithm.name") == "dsgd"), None)
        doc += [f"## {title}", "", *table(shown, results, dsgd_key, keyed=group == "rerun")]
        png = docs / f"results-{preset}-{group}.png"
        if plot(shown, results, png, title):
            doc += ["", f"![{title}]({png.name})"]
        doc += footer([e.key for e in shown])
        if group.startswith("main") and members[0].key in results:
            doc += [f"### MCE-PL trajectory, {k} classes per agent", "",
                    *trajectory(members[0].label, results[members[0].key]), *footer([members[0].key])]
    per_run = [f"| {e.key} | {rounds_cell(results[e.key])} | "
               f"{wall_cell(results[e.key])} | "
               f"`{run_file(out / e.key, 'command.txt')}` | {run_file(out / e.key, 'hardware.txt')} |"
               for e in exps if e.key in results]
    walls = [results[e.key]["wall_s"] for e in exps if e.key in results and results[e.key]["wall_s"] is not None]
    total = (f"Sum of wall times: {sum(walls):.0f} s ({sum(walls) / 60:.1f} min) for {len(walls)} runs; runs "
             f"overlap when `--jobs` > 1 (each run's wall time is its own).") if walls else ""
    doc += ["## Run times", "", "| experiment | rounds | wall seconds | command | hardware |", "|---|---:|---:|---|---|",
            *per_run,
            "", total,
            *footer(list(results))]
    path = docs / REPORTS[preset]
    path.write_text("\n".join(doc))
    return path


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


def main(argv: list[str] | None = None) -> None:
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
    args = parser.parse_args(argv)
    preset = "full" if args.full else "quick"
    out = args.out or ROOT / "runs" / f"reproduce-{preset}"
    raw, reduction = base_config(preset, args)
    exps = experiments(preset)
    if args.only:
        wanted = list(dict.fromkeys(args.only.split(",")))  # run in the order given
        by_key = {e.key: e for e in exps}
        unknown = [k for k in wanted if k not in by_key]
        if unknown:
            raise SystemExit(f"unknown experiment(s): {', '.join(unknown)}")
        selected = [by_key[k] for k in wanted]
    else:
        selected = exps
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


if __name__ == "__main__":
    main()
