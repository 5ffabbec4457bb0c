"""``simulate --backend ray``: the lab's agents in shards on Ray workers, one or many machines.

The driver (this process) loads the data only for the partition and the report; every worker
builds its shard's agents from the lab config itself (:class:`~.shard.Shard`) — so the dataset
must be at the config's ``data_dir`` on every machine — and computes their rounds. Per round the
driver collects what each shard's agents published and hands each shard the messages its agents'
neighbours on other shards sent: the same signed, encoded bytes an in-process lab passes around,
so the masks are the in-process simulator's (tested). docs/cluster.md says how to start a cluster.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import LabConfig
from ..data.resolve import LabData, load_lab_data
from ..errors import UserError
from ..extras import require_modules
from ..nn.zoo import build_model
from ..run_dir import AgentRecord
from ..simulator import build_topology_for
from .base import SimulationBackend
from .checkpoints import commit_set, latest_set, new_set, read_requests
from .shard import Published, Shard


def import_ray(local: bool) -> Any:
    """The ``ray`` module, or a one-line error naming the extra that provides it.

    ``local``: this run starts its own one-machine Ray, and every socket of it stays on loopback
    (Ray would otherwise advertise the machine's external address; its single-node switch).
    """
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    require_modules("cluster", "--backend ray")
    return importlib.import_module("ray")


def shard_ranges(agents: int, workers: int) -> list[list[int]]:
    """Contiguous, as equal as can be: ``workers`` shards of ``agents`` (no empty shard)."""
    workers = max(1, min(workers, agents))
    size, extra = divmod(agents, workers)
    starts = [i * size + min(i, extra) for i in range(workers + 1)]
    return [list(range(starts[i], starts[i + 1])) for i in range(workers)]


def worker_config(config: LabConfig, data: LabData) -> dict[str, Any]:
    """The config a worker builds its shard from: where the driver found the dataset, when the config
    names no folder (a worker's own working directory is Ray's, not the driver's); the run directory
    keeps the config as given."""
    if config.data.data_dir or data.directory is None:
        return config.to_dict()
    return config.replace(data=config.data.replace(data_dir=str(data.directory.resolve()))).to_dict()


class RaySimulator(SimulationBackend):
    """A lab whose agents run in ``workers`` Ray actors of ``worker_cpus`` CPUs (and ``worker_gpus`` GPUs) each.

    ``address``: a running cluster (``ray start --head …`` on one machine, ``ray start --address …`` on
    the others); None starts a local one on the loopback interface for this run.
    """

    def __init__(self, config: LabConfig, *, workers: int, address: str | None = None, worker_cpus: float | None = None,
                 worker_gpus: float = 0.0, log: Callable[[str], None] = print) -> None:
        ray = import_ray(local=address is None)
        self.log = log
        if worker_gpus > 0 and not config.device.startswith("cuda"):
            config = config.replace(device="cuda")  # a GPU share is for computing on it
        data = load_lab_data(config, build_model(config.model).input_shape, log)
        self.config, self.data = config.replace(data=data.config), data
        self.topology = build_topology_for(self.config)
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     **({} if address else {"_node_ip_address": "127.0.0.1"}))
        cpus = float(self.config.threads if worker_cpus is None else worker_cpus)
        actor = ray.remote(num_cpus=cpus, num_gpus=worker_gpus)(Shard)
        self.shards = shard_ranges(self.config.agents, workers)
        self.workers = [actor.remote(worker_config(self.config, data), ids) for ids in self.shards]
        self._fingerprints: list[str] = ray.get([w.fingerprint.remote() for w in self.workers])
        if len(set(self._fingerprints)) != 1:
            raise UserError(f"the Ray workers generated different fixed weights ({', '.join(set(self._fingerprints))}):"
                            " every machine needs the same torch version")
        self.log(f"data: {data.description}; {len(self.workers)} Ray workers × {cpus:g} CPU"
                 f"{f' + {worker_gpus:g} GPU' if worker_gpus else ''} (agents "
                 + ", ".join(f"{ids[0]}–{ids[-1]}" for ids in self.shards) + ")")
        self.requests: list[dict[int, int]] = [{} for _ in self.workers]

    @property
    def fingerprint_hex(self) -> str:
        return self._fingerprints[0]

    def _shard_of(self, agent: int) -> int:
        return next(i for i, ids in enumerate(self.shards) if agent in ids)

    def run_round(self, t: int) -> list[dict]:
        ray = self._ray
        published: list[list[Published]] = ray.get([w.begin.remote(t, self.requests[i])
                                                      for i, w in enumerate(self.workers)])
        finished = ray.get([w.finish.remote(t, self._inbox(i, published)) for i, w in enumerate(self.workers)])
        self.requests = [{} for _ in self.workers]
        for _, requests in finished:
            for sender, since in requests.items():
                held = self.requests[self._shard_of(sender)]
                held[sender] = min(since, held.get(sender, since))
        return [row for rows, _ in finished for row in rows]

    def save_checkpoints(self, directory: Path, next_round: int) -> None:
        """Each worker writes its agents' files into the set (on several machines: a folder they all share)."""
        folder = new_set(directory, next_round)
        pending = self._ray.get([w.save.remote(str(folder.resolve()), next_round) for w in self.workers])
        requests: dict[int, int] = {}  # those the driver holds for the next round, and those a shard holds
        for part in [*self.requests, *pending]:
            for sender, since in part.items():
                requests[sender] = min(since, requests.get(sender, since))
        commit_set(directory, folder, next_round, requests)

    def restore_checkpoints(self, directory: Path) -> int:
        folder, next_round = latest_set(directory)
        self._ray.get([w.restore.remote(str(folder.resolve()), next_round) for w in self.workers])
        for sender, since in read_requests(folder).items():
            self.requests[self._shard_of(sender)][sender] = since
        return next_round

    def _inbox(self, shard: int, published: Sequence[list[Published]]) -> list[Published]:
        """The messages of other shards' agents that one of ``shard``'s agents hears."""
        heard = {j for i in self.shards[shard] for j in self.topology.neighbours(i)}
        return [m for other, messages in enumerate(published) if other != shard for m in messages if m[0] in heard]

    def static_fields(self) -> list[dict[str, Any]]:
        return [fields for part in self._ray.get([w.static_fields.remote() for w in self.workers]) for fields in part]

    def evaluation(self) -> list[dict[str, float]]:
        return [fields for part in self._ray.get([w.evaluation.remote() for w in self.workers]) for fields in part]

    def final_messages(self) -> list[tuple[AgentRecord, bytes]]:
        parts = self._ray.get([w.final_messages.remote() for w in self.workers])
        return [(AgentRecord.model_validate(record), message) for part in parts for record, message in part]

    def close(self) -> None:
        for worker in self.workers:
            self._ray.kill(worker)
        if self._started:
            self._ray.shutdown()
