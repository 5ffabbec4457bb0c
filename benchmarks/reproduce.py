"""Reproduce the paper's comparisons: MCE-PL vs baselines, ablations, DSLTH, node heterogeneity.

Every experiment is an ordinary simulator run of the same harness (same data, partitions,
topology, evaluation; bytes counted from the real encoded messages), differing only in config
overrides — mostly ``algorithm.name`` (mcepl | local_only | dsgd | dispfl | weight_training |
mask_averaging). Each run writes its raw per-(round, agent) JSONL to
``<out>/<experiment>/metrics.jsonl`` (plus its ``config.yaml``); the report (``docs/results.md``
for ``--full``, ``docs/results-quick.md`` for ``--quick``) and its PNG plots are then regenerated
from those files only, so no number in the report is typed by hand. Finished runs are reused
(``--rerun`` to redo them), so an interrupted ``--full`` resumes where it stopped.

This file is only the entry point, kept because it is the documented command (README, docs/results*.md,
every run's ``command.txt``); the code is the ``benchmarks.reproduction`` package (module map in its
``__init__``).

Usage:
    python benchmarks/reproduce.py --quick             # ≤ 30 min on 2 CPU cores (reduced, stated)
    python benchmarks/reproduce.py --full              # the paper setting (examples/paper.yaml)
    python benchmarks/reproduce.py --quick --report-only   # re-render docs from existing runs
    python benchmarks/reproduce.py --full --archive results    # + copy runs (no masks) to results/
    python benchmarks/reproduce.py --full --report-only --out results/reproduce-full   # from the archive
"""

import sys
from pathlib import Path

# Run as a script, Python puts benchmarks/ on sys.path, not the checkout that holds both packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reproduction.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
