"""One run's metrics reduced to the numbers the report shows, and the arithmetic that compares runs.

Everything in the report is computed here from the raw per-(round, agent) rows, never typed by hand;
the tables, findings and plots only format these summaries.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import yaml

from benchmarks.reproduction.runs import INTERRUPTED, metrics_path
from edge_mcepl.metrics import read_metrics

LOSS_WINDOW = 20  # rounds over which the reported training loss is averaged (one batch per round is noisy)


def summarize(run_dir: Path) -> dict[str, Any]:
    """A run's accuracy curve, final accuracies, bytes, densities and losses, up to its last evaluated round."""
    rows = read_metrics(metrics_path(run_dir))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    by_round: dict[int, list[dict[str, Any]]] = {}
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
            curve.append({"round": t, "acc": statistics.mean(accs), "min": min(accs), "max": max(accs),
                          "cum_bytes": cumulative})
    final = by_round[last]
    accs = [r["accuracy"] for r in final]
    per_round = [sum(r["bytes_sent"] for r in by_round[t]) for t in sorted(by_round)]
    live = [sum(r["live_filters"][: r["conv_layers"]]) for r in final]
    wall = run_dir / "wall_seconds.txt"
    mean_loss = {t: statistics.mean(r["loss"] for r in by_round[t]) for t in sorted(by_round)}
    stopped = run_dir / INTERRUPTED
    return {
        "mean_loss": mean_loss, "train_loss": train_loss_at({"mean_loss": mean_loss}, last),
        "config": config, "curve": curve, "rounds_run": last, "mean": statistics.mean(accs),
        "std": statistics.pstdev(accs), "min": min(accs), "max": max(accs),
        "bytes_per_round": statistics.mean(per_round), "cum_bytes": sum(per_round),
        "density": statistics.mean(r["density"] for r in final), "live_conv_filters": statistics.mean(live),
        "conv_filters": sum(final[0]["filters"][: final[0]["conv_layers"]]),
        # mean over agents: with ordered width each agent sends only its block
        "message_bytes": round(statistics.mean(r["bytes_sent"] / max(1, len_neighbours(r)) for r in final)),
        "wall_s": float(wall.read_text()) if wall.exists() else None,
        "stopped": None if wall.exists() else stopped.read_text().strip(),
    }


def len_neighbours(row: dict[str, Any]) -> int:
    """How many neighbours a row's agent heard (0 in a row that does not record it)."""
    return row.get("neighbours_heard", 0)


def train_loss_at(summary: dict[str, Any], round: int) -> float:
    """Mean training loss over the LOSS_WINDOW rounds ending at ``round`` (one batch a round is noisy)."""
    window = [v for t, v in summary["mean_loss"].items() if round - LOSS_WINDOW < t <= round]
    return statistics.mean(window)


def accuracy_at(summary: dict[str, Any], round: int) -> float | None:
    """Mean accuracy at an evaluated round (None if that round was not evaluated)."""
    return next((p["acc"] for p in summary["curve"] if p["round"] == round), None)


def common_round(summaries: list[dict[str, Any]]) -> int | None:
    """The last round every run evaluated (runs differ in length and in evaluation interval)."""
    rounds = set.intersection(*({p["round"] for p in s["curve"]} for s in summaries))
    return max(rounds, default=None)
