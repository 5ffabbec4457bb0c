"""Run metrics: one JSON line per (round, agent), and the end-of-run summary table.

JSONL keeps a crashed or interrupted run readable up to its last completed round and is trivial
to load with pandas or a few lines of Python for plots.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, TextIO

from .atomic import atomic_write


def to_jsonl(rows: list[dict[str, Any]]) -> str:
    """Rows as JSON lines, the one serialisation every metrics file uses."""
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)


class MetricsLog:
    """Appends rows to ``metrics.jsonl``, flushed per round so a killed run keeps what it did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._file.write(to_jsonl(rows))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace ``path`` with exactly these rows (atomically: a reader never sees half of them)."""
    atomic_write(path, to_jsonl(rows))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` (or an archived ``metrics.jsonl.gz``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_completed_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` a process may have been killed writing: a torn line is skipped, no file is none."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("round"), int):
                rows.append(row)
    return rows


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Per-agent table of the last evaluated round plus totals, as aligned plain text."""
    evaluated = [r for r in rows if "accuracy" in r]
    if not evaluated:
        return "no evaluation was run"
    last_round = max(r["round"] for r in evaluated)
    final = sorted((r for r in evaluated if r["round"] == last_round), key=lambda r: r["agent"])
    sent: dict[int, int] = {}
    for r in rows:
        sent[r["agent"]] = sent.get(r["agent"], 0) + r["bytes_sent"]
    header = ("agent", "classes", "r_conv", "width", "accuracy", "density", "live conv filters", "MB sent")
    lines = [header]
    for r in final:
        convs = " ".join(f"{n}/{total}" for n, total in zip(r["live_filters"], r["filters"][: r["conv_layers"]]))
        lines.append((str(r["agent"]), ",".join(map(str, r["classes"])), f"{r['retention_conv']:.2f}",
                      f"{r.get('width', 1.0):.3g}",
                      f"{r['accuracy']:.4f}", f"{r['density']:.3f}", convs, f"{sent[r['agent']] / 1e6:.2f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines]
    mean = sum(r["accuracy"] for r in final) / len(final)
    text.append(f"round {last_round}: mean personalized accuracy {mean:.4f} over {len(final)} agents; "
                f"network total {sum(sent.values()) / 1e6:.2f} MB sent")
    return "\n".join(text)
