"""The run loop every simulation backend shares: rounds, evaluation schedule, metrics, final state, summary.

A backend only says how one round runs, how agents are evaluated and what each agent's final mask
message is; the files it leaves (``config.yaml``, ``metrics.jsonl``, ``final/``, ``summary.txt``)
are written here, once, so a run on Ray workers is laid out byte for byte like an in-process one.
Every ``checkpoint_every`` rounds the backend saves its agents (:meth:`SimulationBackend.save_checkpoints`),
and ``run(resume=True)`` continues after the latest set, with the metrics of the rounds after it
dropped and run again: a long run survives a crash or the end of a session.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..algorithms.registry import rule_class
from ..config import LabConfig
from ..data.resolve import LabData
from ..metrics import MetricsLog, read_completed_rows, read_metrics, summary_table, write_metrics
from ..run_dir import AgentEntry, AgentRecord, RunIdentity, write_config, write_final_state, write_summary
from ..topology import Topology
from .checkpoints import CHECKPOINT_DIR, remove_checkpoints


class SimulationBackend(ABC):
    """A simulated lab: ``config`` (what ran, data source resolved), ``data`` and the weights' fingerprint."""

    config: LabConfig
    data: LabData
    topology: Topology
    log: Callable[[str], None]

    @property
    @abstractmethod
    def fingerprint_hex(self) -> str:
        """The fixed weights' fingerprint (every agent's, wherever it computes)."""

    @abstractmethod
    def run_round(self, t: int) -> list[dict]:
        """Round index ``t`` (0-based); a metrics row per agent in agent order (without accuracy).

        A row's ``round`` is the round's number, 1-based — what the console prints and what
        ``eval_every`` counts: the row of ``run_round(0)`` says round 1.
        """

    @abstractmethod
    def evaluation(self) -> list[dict[str, float]]:
        """Every agent's evaluation fields in agent order (test, and validation with a split)."""

    @abstractmethod
    def final_messages(self) -> list[tuple[AgentRecord, bytes]]:
        """Each agent's record and final mask message (standing alone, unsigned), in agent order."""

    @abstractmethod
    def close(self) -> None:
        """Release what the backend holds (workers); the caller stops using it."""

    @property
    def learns_masks(self) -> bool:
        """Whether the agents' rule ends with masks export can read (written to ``final/``)."""
        return rule_class(self.config.algorithm.name).learns_masks

    @abstractmethod
    def static_fields(self) -> list[dict[str, Any]]:
        """What every metrics row of an agent repeats, in agent order (:func:`~edge_mcepl.simulator.static_fields`)."""

    @abstractmethod
    def save_checkpoints(self, directory: Path, next_round: int) -> None:
        """Every agent's state after ``next_round`` rounds, as one set under ``directory`` (backends/checkpoints.py)."""

    @abstractmethod
    def restore_checkpoints(self, directory: Path) -> int:
        """The agents' state from the latest set under ``directory``; the rounds it completed."""

    def run(self, run_dir: Path, progress: bool = True, checkpoint_every: int = 0, resume: bool = False) -> str:
        """All rounds (``resume``: those after the latest checkpoint in ``run_dir``), with metrics, final state
        and summary written to ``run_dir``; returns the summary."""
        checkpoints = run_dir / CHECKPOINT_DIR
        if resume:
            start = self.restore_checkpoints(checkpoints)
            done = [r for r in read_completed_rows(run_dir / "metrics.jsonl") if r["round"] <= start]
            write_metrics(run_dir / "metrics.jsonl", done)
            self.log(f"resuming after round {start} of {self.config.rounds} (checkpoint in {checkpoints})")
        else:
            start = 0
            run_dir.mkdir(parents=True, exist_ok=True)
            write_config(run_dir, self.config)
        metrics = MetricsLog(run_dir / "metrics.jsonl")
        static = self.static_fields()
        bar = tqdm(range(start, self.config.rounds), desc=self.config.name, unit="round", disable=not progress,
                   initial=start, total=self.config.rounds)
        try:
            for t in bar:
                began = time.perf_counter()
                rows = self.run_round(t)
                round_s = time.perf_counter() - began
                if (t + 1) % self.config.eval_every == 0 or t == self.config.rounds - 1:
                    for row, fields in zip(rows, self.evaluation()):
                        row.update(fields)
                    accs = [r["accuracy"] for r in rows]
                    bar.set_postfix(acc=f"{sum(accs) / len(accs):.3f}")
                    (bar.write if progress else self.log)(
                        f"round {t + 1:>5}: mean personalized accuracy {sum(accs) / len(accs):.4f} "
                        f"(min {min(accs):.4f}, max {max(accs):.4f})")
                for row, extra in zip(rows, static):
                    row.update(extra, round_seconds=round(round_s, 6))  # the whole synchronous round, every agent
                metrics.write(rows)
                if checkpoint_every and (t + 1) % checkpoint_every == 0 and t + 1 < self.config.rounds:
                    self.save_checkpoints(checkpoints, t + 1)
        finally:
            metrics.close()
            bar.close()
        if self.learns_masks:  # export reads masks; weight-based baselines have none
            self.save_final_state(run_dir / "final")
        summary = summary_table(read_metrics(run_dir / "metrics.jsonl"))
        write_summary(run_dir, summary)
        remove_checkpoints(checkpoints)  # only once the run's results are written
        return summary

    def save_final_state(self, directory: Path) -> None:
        """Everything export needs — seed, architecture, fingerprint, each agent's mask — no scores."""
        identity = RunIdentity(model=self.config.model, num_classes=self.data.train.num_classes,
                               weights_seed=self.config.seed, weights=self.config.weights,
                               fingerprint=self.fingerprint_hex, rounds=self.config.rounds)
        write_final_state(directory, identity, [(AgentEntry.of_record(record), message)
                                                for record, message in self.final_messages()])
