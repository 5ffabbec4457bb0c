"""The report's PNG plots: accuracy vs round and vs cumulative bytes, one figure per report section.

matplotlib is imported only here, and only when plotting, because it is an optional dependency
(the ``reproduce`` extra): without it the report is still written, without its figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.reproduction.experiments import Experiment


def plot(exps: list[Experiment], results: dict[str, dict[str, Any]], path: Path, title: str) -> bool:
    """Write the section's figure to ``path``; False (and no file) when matplotlib is not installed."""
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
