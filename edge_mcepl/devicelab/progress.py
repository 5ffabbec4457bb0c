"""An agent's progress in a run, as its retained status carries it: running totals and the last round's times.

Each ``join`` folds its metrics rows into one :class:`Progress` and publishes :meth:`Progress.fields`
with every status, so an observer that connects mid-run (``edge-mcepl dashboard``) reads the totals
since round 1 from the retained message instead of having to have seen every round. The dashboard's
view of a finished run folds the run directory's rows the same way, so live and finished views of
one run show the same numbers. No torch: the dashboard imports it on a machine that only watches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

OTHER_REASON = "other"  # refusals a row counts without a reason (rows written before reasons were recorded)


@dataclass
class Progress:
    bytes_sent: int = 0
    bytes_received: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # refused messages by reason, since round 1
    round_seconds: float | None = None  # the last completed round's
    gather_seconds: float | None = None  # the last round's wait for neighbours (a device lab's rows only)
    accuracy: float | None = None  # the last evaluation's
    eval_round: int | None = None

    @classmethod
    def of_rows(cls, rows: Iterable[dict[str, Any]]) -> Progress:
        progress = cls()
        for row in rows:
            progress.add(row)
        return progress

    def add(self, row: dict[str, Any]) -> None:
        """Fold one metrics row (the simulator's or a device's) into the totals."""
        self.bytes_sent += int(row.get("bytes_sent", 0))
        self.bytes_received += int(row.get("bytes_received", 0))
        reasons = {str(k): int(v) for k, v in (row.get("rejected_reasons") or {}).items()}
        self.rejected.update(reasons)
        unexplained = int(row.get("rejected", 0)) - sum(reasons.values())
        if unexplained > 0:
            self.rejected[OTHER_REASON] += unexplained
        self.round_seconds = row.get("round_seconds")
        self.gather_seconds = row.get("gather_seconds")
        if "accuracy" in row:
            self.accuracy, self.eval_round = float(row["accuracy"]), int(row["round"])

    def fields(self) -> dict[str, Any]:
        """What a status message carries (JSON-ready)."""
        return {"bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
                "rejected": dict(sorted(self.rejected.items())), "round_seconds": self.round_seconds,
                "gather_seconds": self.gather_seconds, "accuracy": self.accuracy, "eval_round": self.eval_round}
