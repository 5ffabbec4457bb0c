"""The report's headline comparisons between runs, as sentences computed from their summaries.

Apart from the tables because these pick which runs to compare (each against its own MCE-PL
reference, reruns against their originals) and what counts as notable (a collapse, the 32× bytes
claim, the paper's headline accuracy).
"""

from __future__ import annotations

from typing import Any

from benchmarks.reproduction.experiments import RERUNS, Experiment
from benchmarks.reproduction.summary import LOSS_WINDOW, accuracy_at, common_round, train_loss_at

PAPER_HEADLINE = 0.7503  # the paper's "up to 75.03 %" mean personalized accuracy (its best setting)

COLLAPSE = 0.05  # a run that ends this far below its best evaluated accuracy is called out (unstable)


def compare(results: dict[str, dict[str, Any]], a: str, b: str) -> tuple[int, float] | None:
    """(common round, accuracy of a − accuracy of b there), or None when either run is missing."""
    if a not in results or b not in results:
        return None
    common = common_round([results[a], results[b]])
    return None if common is None else (common, accuracy_at(results[a], common) - accuracy_at(results[b], common))


def findings(exps: list[Experiment], results: dict[str, dict[str, Any]]) -> list[str]:
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
