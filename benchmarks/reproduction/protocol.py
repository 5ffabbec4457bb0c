"""The full report's validation-protocol section (issue 15): the improved-preset candidate against its controls.

The paper-reproduction tables above it read every run at its last round on test data, as the paper
does. This section is the protocol beyond the paper: runs with a validation split
(``results/ablate/``, docs/ablation-400.md), each read at its own best **validation** round — the
stopping rule a user without test labels has — with the test accuracy there reported, and the
issue's targets checked on those test numbers. A run not archived yet is listed as such, so the
section says what is missing instead of leaving it out.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmarks.ablation_table import Evaluation, best_validation, evaluations, paired_se
from benchmarks.reproduction import ROOT

PROTOCOL_DIR = ROOT / "results" / "ablate"
CANDIDATE = "cosine-lr20-crop-flip-400"
RUNS: tuple[tuple[str, str], ...] = (
    (CANDIDATE, "MCE-PL candidate: `reference` preset + `lr` 20, cosine schedule, crop-and-flip"),
    ("cosine-lr20-400", "the candidate without crop-and-flip"),
    ("reference-400", "MCE-PL, `reference` preset (paired reference on the same split)"),
    ("local-only-cosine-lr20-crop-flip-400", "local-only masks (no neighbours), the candidate's preset"),
    ("train-alone-tuned-cosine-crop-flip-400",
     "dense weight training alone, weight_lr tuned on validation, same schedule and augmentation"),
    ("train-alone-cosine-crop-flip-400", "dense weight training alone, weight_lr 0.05 (the default, not tuned)"),
    ("dispfl-cosine-crop-flip-400", "Dis-PFL, weight_lr tuned on validation, same schedule and augmentation"),
    ("dsgd-cosine-crop-flip-400", "DSGD, weight_lr tuned on validation, same schedule and augmentation"),
)
# (run, margin in test points the candidate must lead it by, name in the verdict)
MARGINS: tuple[tuple[str, float, str], ...] = (
    ("train-alone-tuned-cosine-crop-flip-400", 3.0, "train alone"),
    ("dispfl-cosine-crop-flip-400", 3.0, "tuned Dis-PFL"),
    ("local-only-cosine-lr20-crop-flip-400", 5.0, "local-only masks (same preset)"),
)
ABSOLUTE_TARGET = 70.0  # mean personalized test accuracy, %
# (baseline, its 100-round step-size trials' folder pattern, its 400-round final): the tuning budget the
# candidate had — a handful of step sizes at 100 rounds, chosen on validation — given to each baseline.
TUNING: tuple[tuple[str, str, str], ...] = (
    ("train alone", "train-alone-lr*-cf-100", "train-alone-tuned-cosine-crop-flip-400"),
    ("Dis-PFL", "dispfl-lr*-cf-100", "dispfl-cosine-crop-flip-400"),
    ("DSGD", "dsgd-lr*-cf-100", "dsgd-cosine-crop-flip-400"),
)


def archived(directory: Path, name: str) -> bool:
    return any((directory / name / f).exists() for f in ("metrics.jsonl", "metrics.jsonl.gz"))


def weight_lr(run_dir: Path) -> float:
    """The step size a run trained its weights with, from the config archived beside its metrics."""
    return float(yaml.safe_load((run_dir / "config.yaml").read_text())["algorithm"]["weight_lr"])


def tuning(directory: Path) -> list[str]:
    """Each baseline's step-size trials (best validation accuracy of each) and whether its final uses the best.

    Why in the report: the issue asks that every choice be made on validation with the candidate's trial
    budget; this table is the evidence, and a final run with another step size than its best trial is
    flagged instead of passing silently.
    """
    lines = ["Baselines' step size, chosen on validation: 100-round trials with the candidate's schedule and "
             "augmentation, best mean validation accuracy of each (%; the chosen one in bold).", "",
             "| baseline | weight_lr: best validation | chosen | final (400 rounds) |", "|---|---|---:|---|"]
    for label, pattern, final in TUNING:
        trials = sorted((weight_lr(d), best_validation(evaluations(d)).val)
                        for d in directory.glob(pattern) if archived(directory, d.name))
        if not trials:
            lines.append(f"| {label} | no trial archived | | |")
            continue
        chosen = max(trials, key=lambda t: t[1])[0]
        cells = " · ".join(f"**{lr:g}: {100 * val:.2f}**" if lr == chosen else f"{lr:g}: {100 * val:.2f}"
                           for lr, val in trials)
        edge = " (at the grid's edge)" if chosen in (trials[0][0], trials[-1][0]) else ""
        if not archived(directory, final):
            ran = f"not run yet (`{final}`)"
        elif (used := weight_lr(directory / final)) == chosen:
            ran = f"`{final}`, weight_lr {used:g}"
        else:
            ran = f"`{final}` uses weight_lr {used:g}, **not the chosen {chosen:g}**"
        lines.append(f"| {label} | {cells} | {chosen:g}{edge} | {ran} |")
    return [*lines, ""]


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def difference(base: Evaluation, other: Evaluation) -> str:
    """other − base in points: validation ± paired SE, test ± paired SE."""
    return (f"{100 * (other.val - base.val):+.2f} ± {100 * paired_se(base.vals, other.vals):.2f} | "
            f"{100 * (other.test - base.test):+.2f} ± {100 * paired_se(base.tests, other.tests):.2f}")


def section(directory: Path = PROTOCOL_DIR) -> list[str]:
    """The section's Markdown lines, from the archived runs under ``directory``."""
    lines = ["## Beyond the paper: the validation protocol (issue 15)", "",
             "Paper setting (20 agents, reference graph, 4-class shards, data_fraction 0.2, 400 rounds), 10 % of "
             "each agent's shard held out for validation; each run is read at its own best validation round, test "
             "accuracy reported there (mean over agents, %). Δ = candidate − run, ± the paired standard error over "
             f"the agents. Runs: `{directory.relative_to(ROOT) if directory.is_relative_to(ROOT) else directory}/`"
             " (configs beside them; docs/ablation-400.md has every evaluated round).", ""]
    if not archived(directory, CANDIDATE):
        return [*lines, f"Not run yet: the candidate `{CANDIDATE}` has no archived run.", ""]
    best = {name: best_validation(evaluations(directory / name)) for name, _ in RUNS if archived(directory, name)}
    cand = best[CANDIDATE]
    lines += ["| run | what | best val round | validation | test | Δ validation | Δ test |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name, what in RUNS:
        b = best.get(name)
        if b is None:
            lines.append(f"| `{name}` | {what} | not run yet | | | | |")
        elif name == CANDIDATE:
            lines.append(f"| `{name}` | {what} | {b.round} | {100 * b.val:.2f} | {100 * b.test:.2f} | | |")
        else:
            lines.append(f"| `{name}` | {what} | {b.round} | {100 * b.val:.2f} | {100 * b.test:.2f} | "
                         f"{difference(b, cand)} |")
    lines += ["", "Targets (test accuracy at the best validation round):", "",
              f"- ≥ {ABSOLUTE_TARGET:g} %: {100 * cand.test:.2f} % — {verdict(100 * cand.test >= ABSOLUTE_TARGET)}"]
    for name, margin, label in MARGINS:
        b = best.get(name)
        if b is None:
            lines.append(f"- ≥ {label} + {margin:g}: not run yet (`{name}`)")
        else:
            lead = 100 * (cand.test - b.test)
            lines.append(f"- ≥ {label} + {margin:g}: {lead:+.2f} — {verdict(lead >= margin)}")
    return [*lines, "", *tuning(directory)]
