"""One ``edge-mcepl join`` process: the agents it hosts (one, or ``--agent-id 0-49``), in lockstep.

A process hosting several agents loads the lab's data and generates the fixed weights once —
every agent of a lab shares them, as in the simulator — and gives each agent its own MQTT
connection: the broker's ACL lets an agent's account publish only that agent's masks and status,
so sharing one connection would mean sharing one account, which a forged-mask check could no
longer tell apart. Rounds run in lockstep: every hosted agent trains and publishes round ``t``,
then each gathers and aggregates it; an agent never waits on a local neighbour that has not
published yet, and a hosted agent that checkpointed one round further than the others (stopped
in the middle of a round) sits out the round it has already done.

The exit status says how it ended: 0 done, 3 the lab was restarted with a new config, 128 +
signal interrupted (SIGINT/SIGTERM set a flag the round loop checks at safe points).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import gc
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch

from ..allocator import keep_freed_memory
from ..data.resolve import load_lab_data
from ..errors import UserError
from ..metrics import MetricsLog
from ..nn.zoo import build_model
from ..simulator import build_topology_for
from .join import Join
from .options import JoinOptions, StopFlag, describe_ids


def run_join(opts: JoinOptions) -> int:
    """Join a lab with every agent of ``opts`` and train until the last round (or a signal); the exit status."""
    stop = StopFlag()
    previous = stop.install() if threading.current_thread() is threading.main_thread() else {}
    try:
        return Host(opts, stop).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Host:
    """The process's agents and the phases they go through together."""

    def __init__(self, opts: JoinOptions, stop: StopFlag) -> None:
        if not opts.agents:
            raise UserError("join: no agent to run")
        labs = {hosted.bundle.lab for hosted in opts.agents}
        if len(labs) > 1:
            raise UserError(f"--bundle: the bundles are of several labs ({', '.join(sorted(labs))}); one process "
                            "joins one lab")
        self.opts, self.stop, self.say = opts, stop, opts.log
        self.joins = [Join(opts, hosted, stop) for hosted in opts.agents]
        self.name = describe_ids([j.me for j in self.joins])

    def run(self) -> int:
        first = self.joins[0]
        for join in self.joins:
            join.prepare()
        self.say(f"{self.name}: joining lab {first.lab!r} at {first.address.url}"
                 + (f" with profile {first.profile.name}" if first.profile else ""))
        payload = first.fetch_config()
        for join in self.joins:
            join.read_config(payload)
        self._set_threads()
        self.build_agents()
        for join in self.joins:
            join.restore_checkpoint()
        for join in self.joins:
            join.connect()
        began = time.monotonic()
        for join in self.joins:
            join.wait_for_neighbours(began)
        for join in self.joins:
            join.send_last_mask_again()
        self.run_rounds()
        return max(join.finish() for join in self.joins)  # all alike but for a failure: 0 < 3 < 128 + signal

    def build_agents(self) -> None:
        """Every hosted agent on one copy of the data and the fixed weights; then what no agent holds is freed."""
        first, opts = self.joins[0], self.opts
        slot = f"{opts.load_lock}.{first.me % 2}" if opts.load_lock else None
        with _file_lock(slot):  # the lab runner serialises data loading: N copies of CIFAR-10 at once would not fit
            data = load_lab_data(first.config, build_model(first.config.model).input_shape,
                                 lambda line: self.say(f"{self.name}: {line}"))
            template, fixed = first.fixed_weights(data)
            topology = build_topology_for(first.config)
            # One agent keeps a copy of its own test images (the rest of the data is freed); several
            # share the test set (a few classes each: separate copies would soon cost more than one set).
            for join in self.joins:
                join.build_agent(data, template, fixed, topology, own_test_copy=len(self.joins) == 1)
            del data
        _release_memory()  # what no agent holds is gone: give it back before the heap is tuned to keep memory
        keep_freed_memory()

    def run_rounds(self) -> None:
        """Every remaining round in lockstep: all hosted agents publish, then each gathers and completes it."""
        rounds = self.joins[0].config.rounds
        with ExitStack() as stack:
            metrics = {join.me: MetricsLog(join.metrics_path) for join in self.joins}
            for log in metrics.values():
                stack.callback(log.close)
            for t in range(min(join.done_rounds for join in self.joins), rounds):
                if self.stop:
                    return
                due = [join for join in self.joins if join.done_rounds == t]
                for join in due:
                    join.begin(t)
                for join in due:
                    row = join.end(t)
                    if row is None:  # interrupted while gathering: not complete; the checkpoint is the last one
                        return
                    join.complete(t, row, metrics[join.me])

    def _set_threads(self) -> None:
        """One torch thread count for the process: the largest its agents' plans ask for."""
        wanted = {join.plan.threads for join in self.joins}
        threads = max(wanted)
        if len(wanted) > 1:
            self.say(f"{self.name}: threads {threads} for the process (the agents' plans ask for "
                     f"{', '.join(map(str, sorted(wanted)))}; one process has one thread pool)")
        torch.set_num_threads(threads)


@contextmanager
def _file_lock(path: str | None) -> Iterator[None]:
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass
