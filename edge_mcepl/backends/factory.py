"""The simulation backend a user asks for: ``local`` (this process) or ``ray`` (Ray workers).

Torch-free to import (the CLI reads the options with it); the backend's modules load when one is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:  # the CLI imports this module to parse options: no torch until a backend is built
    from ..config import LabConfig
    from .base import SimulationBackend

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class RayOptions:
    """How a Ray run spreads its agents (``simulate --workers/--ray-address/--worker-cpus/--worker-gpus``)."""

    workers: int = 2
    address: str | None = None  # None: a local cluster on the loopback interface, for this run only
    worker_cpus: float | None = None  # None: the lab config's threads
    worker_gpus: float = 0.0


def open_backend(config: LabConfig, backend: str = "local", ray: RayOptions | None = None,
                 log: Callable[[str], None] = print, batched: bool = False) -> SimulationBackend:
    """Build the lab on ``backend``; the caller closes it (:meth:`SimulationBackend.close`).

    ``batched``: the in-process simulator's batched engine (backends/batched.py)."""
    if batched and backend != "local":
        raise UserError("--batched: the in-process simulator only (--backend local)")
    if backend == "local":
        from ..simulator import Simulator

        return Simulator(config, log=log, batched=batched)
    if backend == "ray":
        from .ray_backend import RaySimulator

        options = ray or RayOptions()
        return RaySimulator(config, workers=options.workers, address=options.address,
                            worker_cpus=options.worker_cpus, worker_gpus=options.worker_gpus, log=log)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
