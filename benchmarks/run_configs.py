"""Run lab configs as ``edge-mcepl simulate`` processes, several at once, resumable: the experiment queue.

Each config runs into ``--out-root/<config stem>``; a folder with a finished run (``summary.txt``)
is reused, one with checkpoints (an interrupted run: a session or a GPU lease ended) is resumed
with ``simulate --resume``, anything else is started afresh. Meant for batches of ablations on a
lent GPU box (``--device cuda --jobs 11``) or for the 2-core CPU (``--jobs 1``); the
heterogeneity sweep (``skew_sweep.py``) runs its runs the same way.

Usage::

    .venv/bin/python benchmarks/run_configs.py results/ablate/A.yaml results/ablate/B.yaml --jobs 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def finished(run_dir: Path) -> bool:
    return (run_dir / "summary.txt").exists()


def run_one(config_path: Path, run_dir: Path, threads: int = 1, device: str | None = None) -> str:
    """One ``edge-mcepl simulate`` process: a fresh run, or the resumption of an interrupted one.

    Its output goes to ``<run_dir>.log``; a failed run stops the caller with the log's path.
    """
    if finished(run_dir):
        return f"{run_dir.name}: reused"
    config_path, run_dir = config_path.resolve(), run_dir.resolve()  # the process runs in the project root
    cli = [sys.executable, "-m", "edge_mcepl.cli", "simulate"]
    if (run_dir / "checkpoints").is_dir():
        command = cli + ["--resume", str(run_dir), "--no-progress"]
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        command = cli + [str(config_path), "--threads", str(threads), "--no-progress", "--out", str(run_dir)]
        command += ["--device", device] if device else []
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / f"{run_dir.name}.log"
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{run_dir.name} failed (exit {done.returncode}); see {log}")
    return f"{run_dir.name}: done"


def run_all(jobs: Sequence[tuple[Path, Path]], parallel: int, threads: int = 1, device: str | None = None) -> None:
    """Every (config, run folder) pair, ``parallel`` at a time, printing one line as each ends."""
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        for line in pool.map(lambda job: run_one(job[0], job[1], threads, device), jobs):
            print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="+", type=Path)
    ap.add_argument("--out-root", type=Path, default=ROOT / "runs" / "ablate")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", help="cpu or cuda / cuda:N (default: each config's)")
    args = ap.parse_args(argv)
    missing = [str(c) for c in args.configs if not c.is_file()]
    if missing:
        ap.error(f"no such config: {', '.join(missing)}")
    run_all([(c, args.out_root / c.stem) for c in args.configs], args.jobs, args.threads, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
