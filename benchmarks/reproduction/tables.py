"""The report's Markdown tables: one row per run (the comparison table) and one per evaluated round (a trajectory).

Formatting only: every number comes from a run's summary (``summary.summarize``).
"""

from __future__ import annotations

from typing import Any

from benchmarks.reproduction.experiments import Experiment
from benchmarks.reproduction.summary import LOSS_WINDOW, accuracy_at, common_round


def rounds_cell(summary: dict[str, Any]) -> str:
    """Rounds run, and for a stopped run how many were planned (its reason is in the run-times table)."""
    if summary["stopped"] is None:
        return str(summary["rounds_run"])
    return f"{summary['rounds_run']} (stopped; {summary['config']['rounds']} planned)"


def wall_cell(summary: dict[str, Any]) -> str:
    """A finished run's wall seconds, or why it stopped (a stopped run has no wall time to show)."""
    return f"{summary['wall_s']}" if summary["stopped"] is None else f"— (stopped: {summary['stopped']})"


def table(exps: list[Experiment], results: dict[str, dict[str, Any]], dsgd_key: str | None,
          keyed: bool = False) -> list[str]:
    """One row per method (named by experiment key too when ``keyed``). Runs of different lengths are
    also compared at the last round all of them evaluated."""
    shown = [results[e.key] for e in exps if e.key in results]
    common = common_round(shown) if shown else None
    mixed = common is not None and any(s["rounds_run"] != common for s in shown)
    at_common = f" acc. @ round {common} |" if mixed else ""
    lines = [f"| method | rounds | mean acc. ± std (over agents) |{at_common} min | max | MB / round (network) | "
             "cumulative MB | bytes per message (mean over agents) | fewer bytes than DSGD | mask density | "
             f"live conv filters | train loss (last {LOSS_WINDOW} rounds) |",
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


def trajectory(label: str, s: dict[str, Any]) -> list[str]:
    """Every evaluated round of one run: how accuracy and cumulative bytes grow."""
    lines = [f"| round | {label}: mean acc. | min | max | cumulative MB |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {p['round']} | {100 * p['acc']:.2f} % | {100 * p['min']:.2f} % | {100 * p['max']:.2f} % | "
              f"{p['cum_bytes'] / 1e6:.1f} |" for p in s["curve"]]
    return lines
