"""The Markdown report (``docs/results.md`` / ``docs/results-quick.md``), assembled section by section.

Regenerated from the run folders only — live ``runs/`` or the committed ``results/`` archive, which
give the same report — so no number in it is typed by hand. This module decides the report's shape
(which sections, what each table is read with); the numbers, tables, findings and plots come from
their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.reproduction import ROOT
from benchmarks.reproduction.experiments import RERUNS, Experiment
from benchmarks.reproduction.findings import findings
from benchmarks.reproduction.plots import plot
from benchmarks.reproduction.protocol import section as protocol_section
from benchmarks.reproduction.runs import reportable, run_file
from benchmarks.reproduction.summary import summarize
from benchmarks.reproduction.tables import rounds_cell, table, trajectory, wall_cell

REPORTS = {"full": "results.md", "quick": "results-quick.md"}  # under docs/

# Section → (title, the experiments of other sections its table and plot show for comparison).
GROUP_TITLES = {
    "ablation": ("Ablations", ["mcepl-k4"]),
    "dslth": ("DSLTH: mask-only learning vs weight training on the same init", ["mcepl-k4", "local-only-k4"]),
    "hetero": ("Node heterogeneity: mixed vs homogeneous retention", ["mcepl-k4", "investigate-retention-0.5"]),
    "structured": ("Capability-sized subnetworks: each profile's ordered width (docs/structured.md)",
                   ["hetero-profiles"]),
    "sweep": ("Baseline step sizes: the main tables' weight_lr vs the config default", ["dsgd-k4", "dispfl-k4"]),
    "investigation": ("Investigation: what limits MCE-PL's accuracy", ["mcepl-k4", "local-only-k4"]),
    "rerun": ("The same config on other hardware (CPU vs GPU)", list(RERUNS)),
}


@dataclass(frozen=True)
class Sources:
    """What every part of one report is rendered from: the experiments, their summaries, and where the runs are."""

    preset: str
    exps: list[Experiment]
    results: dict[str, dict[str, Any]]  # experiment key → summary, reportable runs only
    out: Path
    command: str


def footer(src: Sources, keys: list[str]) -> list[str]:
    """What every table is read with: its runs' hardware and evaluation interval, seeds, sources."""
    cfg = next(iter(src.results.values()))["config"]
    keys = [k for k in keys if k in src.results]
    machines = sorted({run_file(src.out / k, "hardware.txt") for k in keys})
    every = sorted({src.results[k]["config"]["eval_every"] for k in keys})
    out = src.out
    return [
        "",
        f"Report: `{src.command}`; each run's own command and hardware are in the run-times table at the end.  ",
        f"Hardware: {'; '.join(machines)}.  ",
        f"Seed {cfg['seed']} (weights, scores, partitions, graph, batches); model {cfg['model']}; "
        f"{cfg['agents']} agents; topology `{cfg['topology']['kind']}`; rounds per run in each table; "
        f"evaluation every {' or '.join(map(str, every))} rounds.  ",
        f"Raw results: `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}/<experiment>/` "
        "(`metrics.jsonl`, gzipped when archived; `config.yaml`; `command.txt`; `hardware.txt`).",
        "",
    ]


def section(src: Sources, group: str, members: list[Experiment], docs: Path) -> list[str]:
    """One report section: its table (with the other sections' runs it is compared with), plot and footer."""
    by_key = {e.key: e for e in src.exps}
    if group.startswith("main"):
        k = group.split("-k")[1]
        title, extra = f"Main table: {k} classes per agent", []
    else:
        title, extra_keys = GROUP_TITLES[group]
        extra = [by_key[k] for k in extra_keys if k in by_key]
    shown = extra + members
    if not any(e.key in src.results for e in members):
        elsewhere = {"full": " The reduced setting's report, [results-quick.md](results-quick.md), has its own runs.",
                     "quick": ""}[src.preset]
        return [f"## {title}", "", "Not run yet: no finished run of this section's experiments "
                f"({', '.join(e.key for e in members)}).{elsewhere}", ""]
    dsgd_key = next((e.key for e in src.exps if e.group == (group if group.startswith("main") else "main-k4")
                     and e.overrides.get("algorithm.name") == "dsgd"), None)
    doc = [f"## {title}", "", *table(shown, src.results, dsgd_key, keyed=group == "rerun")]
    png = docs / f"results-{src.preset}-{group}.png"
    if plot(shown, src.results, png, title):
        doc += ["", f"![{title}]({png.name})"]
    doc += footer(src, [e.key for e in shown])
    if group.startswith("main") and members[0].key in src.results:
        doc += [f"### MCE-PL trajectory, {k} classes per agent", "",
                *trajectory(members[0].label, src.results[members[0].key]), *footer(src, [members[0].key])]
    return doc


def run_times(src: Sources) -> list[str]:
    """The closing table: every run's rounds, wall time, own command and hardware."""
    results = src.results
    per_run = [f"| {e.key} | {rounds_cell(results[e.key])} | "
               f"{wall_cell(results[e.key])} | "
               f"`{run_file(src.out / e.key, 'command.txt')}` | {run_file(src.out / e.key, 'hardware.txt')} |"
               for e in src.exps if e.key in results]
    walls = [results[e.key]["wall_s"] for e in src.exps if e.key in results and results[e.key]["wall_s"] is not None]
    total = (f"Sum of wall times: {sum(walls):.0f} s ({sum(walls) / 60:.1f} min) for {len(walls)} runs; runs "
             f"overlap when `--jobs` > 1 (each run's wall time is its own).") if walls else ""
    return ["## Run times", "", "| experiment | rounds | wall seconds | command | hardware |",
            "|---|---:|---:|---|---|",
            *per_run,
            "", total,
            *footer(src, list(results))]


def write_report(preset: str, exps: list[Experiment], out: Path, docs: Path, command: str,
                 reduction: str) -> Path:
    """Write ``docs/REPORTS[preset]`` and its plots from the reportable runs under ``out``; returns the report."""
    docs.mkdir(parents=True, exist_ok=True)
    for stale in docs.glob(f"results-{preset}-*.png"):  # the plots always match the report
        stale.unlink()
    results = {e.key: summarize(out / e.key) for e in exps if reportable(out / e.key)}
    if not results:
        raise SystemExit(f"no finished runs under {out}")
    src = Sources(preset, exps, results, out, command)
    groups: dict[str, list[Experiment]] = {}
    for e in exps:
        groups.setdefault(e.group, []).append(e)
    doc = [
        f"# Reproduction report ({preset})", "",
        "Generated by `benchmarks/reproduce.py` from the runs' raw `metrics.jsonl` — do not edit by hand.", "",
        f"**Reduction from the paper setting:** {reduction}.", "",
        "Metric: unweighted mean over agents of each agent's accuracy on all test images of its own classes "
        "(docs/algorithm.md#paper-setting), at the last evaluated round; ± is the population standard deviation "
        "over agents. Bytes are "
        "the exact encoded messages (mask codec for MCE-PL, fp32 codec for DSGD, headers and tags included) × "
        "neighbours, summed over agents; local-only and weight-training baselines send nothing. "
        "Live conv filters: conv output filters with at least one kept weight, mean over agents.", "",
        *findings(exps, results),
    ]
    for group, members in groups.items():
        doc += section(src, group, members, docs)
    if preset == "full":  # the runs beyond the paper, with a validation split (results/ablate/)
        doc += protocol_section()
    doc += run_times(src)
    path = docs / REPORTS[preset]
    path.write_text("\n".join(doc))
    return path
