"""The agent's own data, found the way the run found it, for accuracy and int8 calibration.

The run's ``config.yaml`` names the dataset and the partition; rebuilding the partition with the
same config and seed gives every agent its exact test (and train) indices back. Data is optional
for export: when it cannot be found the manifest records why accuracy was skipped (it is never
replaced by synthetic data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.resolve import LabData, load_lab_data
from ..errors import UserError
from .run import RunInfo


@dataclass(frozen=True, eq=False)
class AgentData:
    test_images: np.ndarray  # float32 N×C×H×W
    test_labels: np.ndarray  # int64 N
    train_images: np.ndarray  # a sample of the agent's train images (int8 calibration)
    description: str


class RunData:
    """Loads the run's dataset once (lazily) and hands out each agent's share."""

    def __init__(self, run: RunInfo, input_shape: tuple[int, int, int], data_dir: str | None = None,
                 log=lambda message: None) -> None:
        self.run, self.input_shape, self.data_dir, self.log = run, input_shape, data_dir, log
        self._loaded: LabData | None = None
        self._error: str | None = None

    def _load(self) -> LabData | None:
        if self._loaded is not None or self._error is not None:
            return self._loaded
        config = self.run.config
        data = config.data
        if self.data_dir is not None:
            data = data.replace(data_dir=self.data_dir)
        # Never the synthetic fallback, even where the run's config allowed it: a CIFAR-10 model scored
        # on synthetic images gives a number that means nothing. (A simulated run that did fall back
        # recorded dataset "synthetic" in its config.yaml, and is scored on that synthetic data.)
        strict = config.replace(data=data.replace(fallback_to_synthetic=False))
        try:
            self._loaded = load_lab_data(strict, self.input_shape, self.log)
        except UserError as exc:
            self._error = str(exc)
        return self._loaded

    def agent(self, agent_id: int, calibration_size: int = 256) -> AgentData | str:
        """The agent's data, or the reason it is unavailable."""
        lab = self._load()
        if lab is None:
            return f"data not available: {self._error}"
        if not 0 <= agent_id < len(lab.partitions):
            return f"the partition has {len(lab.partitions)} agents, not agent {agent_id}"
        part = lab.partitions[agent_id]
        recorded = self.run.agent(agent_id).classes
        if tuple(recorded) != tuple(part.classes):
            return (f"partition mismatch: the run recorded classes {tuple(recorded)} for agent {agent_id}, "
                    f"rebuilding the partition gives {tuple(part.classes)}")
        test_idx = np.array(part.test_indices)  # writable copies: torch indexes with them
        train_idx = np.array(part.train_indices[:calibration_size])
        return AgentData(lab.test.images[test_idx].numpy(), lab.test.labels[test_idx].numpy(),
                         lab.train.images[train_idx].numpy(), lab.description)
