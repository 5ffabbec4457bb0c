"""The paper reproduction behind ``python benchmarks/reproduce.py`` (that file is only its entry point).

Kept under ``benchmarks/`` rather than in ``edge_mcepl``: it is the project's own evidence (the
experiments of the paper, run on this repository's examples and reference setting, rendered into
``docs/results*.md``), not something a user of the library calls. One idea per module:

- ``experiments``: the experiment table — which runs each preset holds, as config overrides;
- ``configs``: each preset's base config (and its stated reduction), an experiment's overrides on it;
- ``runner``: running experiments (one after another or in worker processes), recording each run;
- ``runs``: a run folder's files — reportable or not, its metrics (live or archived), the archive copy;
- ``summary``: one run's metrics reduced to the numbers the report shows;
- ``findings``: the headline comparisons between runs;
- ``tables``: the Markdown tables;
- ``plots``: the PNG plots;
- ``protocol``: the section beyond the paper — runs with a validation split, read at their best validation round;
- ``report``: the whole Markdown report, section by section;
- ``cli``: the command line.
"""

from pathlib import Path

# The checkout: the paper's config (examples/), the default outputs (runs/, docs/) and ../shared.
ROOT = Path(__file__).resolve().parents[2]
