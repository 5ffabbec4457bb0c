"""A run folder's files as the reproduction reads them: reportable or not, its metrics, its records, the archive.

The runner writes them, the report reads them; this is the one place that knows which files mark a
run as finished or as stopped, and which of them the committed archive keeps (so that the report
regenerates from ``results/`` exactly as from the live ``runs/``).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from benchmarks.reproduction.experiments import Experiment

# A run that was cut short is reported only when someone states why, in this file (one line):
# it is then shown up to its last evaluated round, marked as stopped. Any other unfinished run
# (one still going, say) is left out.
INTERRUPTED = "interrupted.txt"


def reportable(run_dir: Path) -> bool:
    """Finished (``wall_seconds.txt`` is written after the last round) or explicitly marked as stopped."""
    return (run_dir / "wall_seconds.txt").exists() or (run_dir / INTERRUPTED).exists()


ARCHIVED_FILES = ("config.yaml", "command.txt", "wall_seconds.txt", "hardware.txt", INTERRUPTED)  # + metrics, gzipped


def metrics_path(run_dir: Path) -> Path:
    """A run's metrics: the live ``metrics.jsonl`` or the archived ``metrics.jsonl.gz``."""
    live = run_dir / "metrics.jsonl"
    return live if live.exists() else run_dir / "metrics.jsonl.gz"


def run_file(run_dir: Path, name: str) -> str:
    """A run's one-line record (command, hardware), or — when it was not recorded."""
    path = run_dir / name
    return path.read_text().strip() if path.exists() else "—"


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
