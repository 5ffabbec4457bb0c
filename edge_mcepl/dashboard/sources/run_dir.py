"""A finished (or interrupted) run directory as a dashboard source: the simulator's or a device lab's.

The rows of ``metrics.jsonl`` replay into the view in round order, each folded into the agent's
:class:`~edge_mcepl.devicelab.progress.Progress` exactly as a live ``join`` folds its own, so the
page of a finished run shows the numbers the live page showed (and the accuracy ``summary.txt``
states). A device lab still running or interrupted has no merged ``metrics.jsonl`` yet: then each
agent's own ``agents/agent_NNN/metrics.jsonl`` is read instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...devicelab.progress import Progress
from ...errors import UserError
from ...metrics import read_completed_rows, read_metrics
from ...run_dir import CONFIG_FILE, FINAL_DIR, METRICS_FILE, STATE_FILE, read_config, read_state
from ..view import edges_of
from .base import LabSource


class RunDirSource(LabSource):
    mode = "run"

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        super().__init__()

    @property
    def where(self) -> str:
        return str(self.run_dir)

    def start(self) -> None:
        run_dir = self.run_dir
        if not (run_dir / CONFIG_FILE).is_file():
            raise UserError(f"{run_dir}: not a run directory (no {CONFIG_FILE}; edge-mcepl simulate --out or "
                            "edge-mcepl lab --out writes one)")
        config = read_config(run_dir)
        rows = self._rows()
        finished = (run_dir / FINAL_DIR / STATE_FILE).is_file()
        entries = {a.id: a for a in read_state(run_dir).agents} if finished else {}
        first = {r["agent"]: r for r in reversed(rows)}  # each agent's first row
        devices = {i: {"profile": entries[i].profile, "retention": entries[i].retention_conv,
                       "width": entries[i].width} if i in entries else
                   {"retention": first.get(i, {}).get("retention_conv"), "width": first.get(i, {}).get("width")}
                   for i in range(config.agents)}
        lab: dict[str, Any] = {"name": config.name, "run_id": None, "model": config.model,
                               "dataset": config.data.dataset, "algorithm": config.algorithm.name,
                               "agents": config.agents, "rounds": config.rounds}
        self.view.set_run(lab, edges_of({i: e.neighbours for i, e in entries.items()}), devices)
        progress = {i: Progress() for i in devices}
        last = {r["agent"]: r["round"] for r in rows}
        for row in sorted(rows, key=lambda r: (r["round"], r["agent"])):
            agent = row["agent"]
            if agent not in progress:
                continue
            progress[agent].add(row)
            done = finished and agent in entries and row["round"] == last[agent]
            self.view.observe_row(row, progress[agent], "done" if done else "offline")
        self.view.note("config", f"{'finished' if finished else 'unfinished'} run {run_dir.name}: {len(rows)} rows, "
                       f"{config.agents} agents, {max(last.values(), default=0)}/{config.rounds} rounds")

    def stop(self) -> None:
        """Nothing is held: the run was read whole by :meth:`start`."""

    def _rows(self) -> list[dict[str, Any]]:
        merged = [self.run_dir / METRICS_FILE, self.run_dir / f"{METRICS_FILE}.gz"]
        for path in merged:
            if path.is_file():
                try:
                    return [r for r in read_metrics(path) if isinstance(r.get("round"), int)]
                except (OSError, ValueError) as exc:
                    raise UserError(f"{path}: cannot read ({exc})") from None
        return [row for path in sorted((self.run_dir / "agents").glob(f"agent_*/{METRICS_FILE}"))
                for row in read_completed_rows(path)]
