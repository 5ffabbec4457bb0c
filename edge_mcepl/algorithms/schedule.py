"""Step-size schedules over a run: what every rule's step sizes are multiplied by in round t.

``constant`` (the paper's) or ``cosine`` — ½(1 + cos(π·t/T)) from 1 at round 0 to 0 at round T,
the schedule the baselines' papers train with and the one that keeps DSGD from diverging late in a
run. One counter per agent, advanced at the end of each round and checkpointed when it matters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

SCHEDULES = ("constant", "cosine")


def cosine(round: int, total_rounds: int, initial: float = 1.0) -> float:
    """``initial``·½(1 + cos(π·t/T)): ``initial`` at t = 0, 0 from t = T on."""
    return initial / 2 * (1 + math.cos(math.pi * min(round, total_rounds) / max(total_rounds, 1)))


@dataclass
class StepSchedule:
    """One agent's schedule: its kind, the run's length and the rounds done so far."""

    kind: str = "constant"
    total_rounds: int = 0
    rounds_done: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of {SCHEDULES}")

    def scale(self) -> float:
        """This round's factor on the step sizes (1 when constant, or with no known run length)."""
        if self.kind == "constant" or self.total_rounds <= 0:
            return 1.0
        return cosine(self.rounds_done, self.total_rounds)

    def advance(self) -> None:
        self.rounds_done += 1

    def state(self) -> dict[str, np.ndarray]:
        """What a checkpoint keeps: the counter, only when a schedule reads it (the reference's state is unchanged)."""
        return {} if self.kind == "constant" else {"rounds_done": np.array([self.rounds_done], dtype=np.int64)}

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        if "rounds_done" in state:
            self.rounds_done = int(state["rounds_done"][0])
