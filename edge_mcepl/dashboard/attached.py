"""The dashboard of the lab this process runs the broker for: ``broker --dashboard`` and ``lab --dashboard``.

It watches exactly as ``edge-mcepl dashboard --bundle bundles/observer.yaml`` would (the observer's
read-only account, the lab CA pinned), from a thread of the coordinator, on loopback only: exposing
it is the stand-alone command's job, with its TLS and password options.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from ..comm.broker.launcher import BrokerHandle
from ..comm.client import MqttOptions
from ..extras import require_extra

LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def attached_dashboard(handle: BrokerHandle, broker_url: str, port: int | None,
                       say: Callable[[str], None]) -> Iterator[None]:
    """Serve the lab's dashboard for the duration of the block (``port`` None: do nothing)."""
    if port is None:
        yield
        return
    require_extra("dashboard")
    from ..comm.broker.bundles import load_bundle
    from .server import DashboardServer
    from .sources import MqttSource

    ca = str(handle.ca_file) if handle.ca_file is not None else None
    source = MqttSource(load_bundle(handle.bundle(None)), broker_url, MqttOptions(ca_file=ca))
    server = DashboardServer(source.view, LOOPBACK, port)
    try:
        source.start()
        server.start()
        say(f"  dashboard:         {server.url}")
        yield
    finally:
        server.stop()
        source.stop()
