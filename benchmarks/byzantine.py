"""Byzantine agents in the paper setting: plain averaging vs robust aggregation, with and without an attack.

Two of the 20 agents — the two best-connected of the reference graph, so the attack reaches the most
honest agents — send, validly signed and at their declared density, the weights they rank lowest
(``attack.kind: inverted_masks``, edge_mcepl/algorithms/attacks.py). Three runs of ``examples/paper.yaml``
(reference preset) for ``--rounds`` rounds:

- ``attack-mean``: the attack, plain averaging (the paper's m̄);
- ``attack-overlap``: the attack, ``algorithm.robust_aggregation: overlap``;
- ``overlap-no-attack``: nobody attacks, robust aggregation on (its cost when it is not needed);

plus the no-attack, plain-averaging run of the reproduction (``--no-attack-run``, archived under
results/: the same config and masks — the codec does not change a mask). Every accuracy is the mean
over the 18 honest agents, on their test shards, at the same round; nothing is tuned on it. Also
reported: how many neighbours robust aggregation left out, honest and Byzantine. Writes
``docs/byzantine.md``.

Usage:  python benchmarks/byzantine.py [--rounds 200] [--threads 2] [--out runs/byzantine]
        python benchmarks/byzantine.py --report-only --out results/byzantine
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.reproduction.configs import base_config, with_overrides  # noqa: E402
from benchmarks.reproduction.experiments import Experiment  # noqa: E402
from benchmarks.reproduction.runner import run_experiment  # noqa: E402
from benchmarks.reproduction.runs import archive  # noqa: E402
from edge_mcepl.config import config_from_dict  # noqa: E402
from edge_mcepl.metrics import read_metrics  # noqa: E402
from edge_mcepl.simulator import build_topology_for  # noqa: E402

NO_ATTACK_RUN = ROOT / "results" / "reproduce-full" / "mcepl-k4-delta"  # evaluated at rounds 100, 200, ...


def attackers(raw: dict[str, Any], count: int = 2) -> list[int]:
    """The ``count`` best-connected agents of the lab's graph (ties: lower id)."""
    topology = build_topology_for(config_from_dict(raw, "paper config"))
    return sorted(sorted(range(topology.num_agents), key=lambda i: (-topology.degree(i), i))[:count])


def experiments(bad: list[int]) -> list[Experiment]:
    attack = {"attack.agents": bad, "attack.kind": "inverted_masks"}
    robust = {"algorithm.robust_aggregation": "overlap"}
    return [Experiment("attack-mean", "byzantine", "attack, plain averaging", attack),
            Experiment("attack-overlap", "byzantine", "attack, robust aggregation (overlap)", {**attack, **robust}),
            Experiment("overlap-no-attack", "byzantine", "no attack, robust aggregation (overlap)", robust)]


def _run_file(run: Path) -> Path:
    return run / "metrics.jsonl" if (run / "metrics.jsonl").exists() else run / "metrics.jsonl.gz"


def honest_accuracy(run: Path, bad: list[int]) -> dict[int, float]:
    """Round → mean accuracy of the honest agents, at every evaluated round."""
    by_round: dict[int, list[float]] = {}
    for row in read_metrics(_run_file(run)):
        if "accuracy" in row and row["agent"] not in bad:
            by_round.setdefault(row["round"], []).append(row["accuracy"])
    return {r: statistics.fmean(a) for r, a in sorted(by_round.items())}


def left_out(run: Path, bad: list[int], neighbours: dict[int, tuple[int, ...]]) -> tuple[float, float]:
    """(share of honest agents' Byzantine neighbours left out, share of their honest neighbours left out).

    A row's ``left_out`` counts neighbours, not which ones; an honest agent with no Byzantine
    neighbour shows the false positives alone, one with some the two mixed — so the shares are
    estimated from agents without Byzantine neighbours (false positives) and the excess of the others.
    """
    clean_rate: list[float] = []
    exposed: list[tuple[int, int, int]] = []  # (left out, Byzantine neighbours, honest neighbours)
    for row in read_metrics(_run_file(run)):
        agent = row["agent"]
        if agent in bad or "left_out" not in row:
            continue
        n_bad = sum(j in bad for j in neighbours[agent])
        n_good = len(neighbours[agent]) - n_bad
        if n_bad == 0:
            clean_rate.append(row["left_out"] / max(n_good, 1))
        else:
            exposed.append((row["left_out"], n_bad, n_good))
    false_positive = statistics.fmean(clean_rate) if clean_rate else 0.0
    caught = [max(0.0, min(1.0, (lo - fp_expected) / n_bad)) for lo, n_bad, n_good in exposed
              for fp_expected in [false_positive * n_good]]
    return (statistics.fmean(caught) if caught else 0.0), false_positive


def same_masks(a: Path, b: Path) -> int | None:
    """The last round at which two runs' agents sent the same masks (by ``sent_digest``), if they did at every
    round both have; None when they differ somewhere or a run has no digests."""
    digests = [{(r["round"], r["agent"]): r.get("sent_digest") for r in read_metrics(_run_file(p))} for p in (a, b)]
    shared = set(digests[0]) & set(digests[1])
    if not shared or any(digests[0][k] is None or digests[0][k] != digests[1][k] for k in shared):
        return None
    return max(t for t, _ in shared)


def report(out: Path, bad: list[int], raw: dict[str, Any], no_attack: Path, command: str) -> str:
    topology = build_topology_for(config_from_dict(raw, "paper config"))
    neighbours = {i: tuple(topology.neighbours(i)) for i in range(topology.num_agents)}
    runs = {"no attack, plain averaging (the reproduction's run)": no_attack,
            **{e.label: out / e.key for e in experiments(bad)}}
    curves = {label: honest_accuracy(path, bad) for label, path in runs.items() if _run_file(path).exists()}
    rounds = sorted(set.intersection(*(set(c) for c in curves.values()))) if curves else []
    shown = [r for r in rounds if r % 50 == 0] or rounds[-1:]
    lines = ["# Byzantine agents: plain averaging vs robust aggregation", "",
             f"Generated by `{command}` (benchmarks/byzantine.py). Paper setting (`examples/paper.yaml`, reference "
             f"preset: 20 agents, reference graph, 4-class shards); agents {bad} — the two best-connected, "
             f"degrees {[topology.degree(i) for i in bad]} — send, validly signed and at their declared density, "
             "the weights they rank lowest (`attack.kind: inverted_masks`). Rounds: as run (the CPU budget allowed "
             "200 of the paper's 400 here). Accuracy: mean over the "
             f"{topology.num_agents - len(bad)} honest agents on their own test shards; nothing here was tuned on "
             "it.", "",
             "| run | " + " | ".join(f"round {r}" for r in shown) + " |",
             "|---|" + "---:|" * len(shown)]
    for label, curve in curves.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * curve[r]:.2f} %" for r in shown) + " |")
    if shown:
        last = shown[-1]
        base = curves.get(next(iter(runs)), {}).get(last)
        lines += ["", f"At round {last}, against the no-attack plain-averaging run:"]
        for label, curve in curves.items():
            if base is not None and label != next(iter(runs)):
                lines.append(f"- {label}: {100 * (curve[last] - base):+.2f} points")
    robust_only = out / "overlap-no-attack"
    if _run_file(robust_only).exists() and _run_file(no_attack).exists():
        upto = same_masks(robust_only, no_attack)
        same = ("Nobody attacking, robust aggregation left no honest neighbour out, so its run is the plain run: "
                f"every agent sent bit-identical masks (by `sent_digest`) through round {upto}.")
        lines += ["", same if upto else "Nobody attacking, the robust run's masks differ from the plain run's."]
    for e in experiments(bad):
        path = out / e.key
        if "overlap" not in e.key or not _run_file(path).exists():
            continue
        caught, false_positive = left_out(path, bad if "attack.agents" in e.overrides else [], neighbours)
        what = (f"{100 * caught:.1f} % of the Byzantine neighbours' masks and " if "attack.agents" in e.overrides
                else "")
        lines += ["", f"`{e.key}`: robust aggregation left out {what}{100 * false_positive:.2f} % of the honest "
                      "neighbours' masks (per round and honest receiver; from each row's `left_out` count)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "byzantine")
    parser.add_argument("--only", help="comma-separated run keys (default: all three)")
    parser.add_argument("--no-attack-run", type=Path, default=NO_ATTACK_RUN)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--archive", type=Path, help="copy finished runs (metrics gzipped) here: results/byzantine")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "byzantine.md")
    args = parser.parse_args(argv)
    raw, _ = base_config("full", args)
    bad = attackers(raw)
    exps = experiments(bad)
    wanted = set(args.only.split(",")) if args.only else {e.key for e in exps}
    command = "python benchmarks/byzantine.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if not args.report_only:
        for e in exps:
            if e.key in wanted:
                config_from_dict(with_overrides(raw, e.overrides), e.key)  # every config valid before a run starts
        for e in exps:
            if e.key in wanted:
                run_experiment(e, raw, args.out / e.key, rerun=False, command=command)
    out = args.out
    if args.archive:
        archive(exps, args.out, args.archive)
        out = args.archive
    args.docs.write_text(report(out, bad, raw, args.no_attack_run, command))
    print(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
