"""``edge-mcepl dashboard``: watch a live lab (as its read-only observer) or a finished run, in a browser."""

from __future__ import annotations

import argparse
import webbrowser
from typing import TYPE_CHECKING

from ..errors import UserError
from .join import add_mqtt_options, mqtt_options

if TYPE_CHECKING:
    from ..dashboard.server import DashboardServer
    from ..dashboard.sources import LabSource

DEFAULT_PORT = 8765


def add_dashboard_option(parser: argparse.ArgumentParser) -> None:
    """``broker --dashboard`` and ``lab --dashboard``: the lab's page from the coordinator itself, on loopback."""
    parser.add_argument("--dashboard", nargs="?", type=int, const=DEFAULT_PORT, metavar="PORT",
                        help=f"also serve the live dashboard on http://127.0.0.1:PORT/ (default {DEFAULT_PORT}; "
                             "needs the dashboard extra)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="watch a live lab or a finished run in a browser (devices, rounds, bytes)")
    p.add_argument("run_dir", nargs="?", help="a finished run directory (simulate --out or lab --out); "
                                              "without it, --bundle watches a live lab")
    p.add_argument("--bundle", help="the lab's observer bundle (the broker writes bundles/observer.yaml): "
                                    "watch the live lab with its read-only account")
    p.add_argument("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT (default: the bundle's)")
    p.add_argument("--host", default="127.0.0.1", help="address the page is served on (default 127.0.0.1, "
                                                       "loopback only; another needs --tls-cert and --tls-key)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--tls-cert", help="HTTPS certificate (needed beyond loopback: the page asks for the observer's "
                                      "password, which must not cross the network in clear)")
    p.add_argument("--tls-key", help="key of --tls-cert")
    p.add_argument("--open", action="store_true", help="open the page in this machine's browser")
    add_mqtt_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..comm.broker.launcher import is_loopback
    from ..dashboard.server import BasicAuth, DashboardServer, Tls
    from ..dashboard.sources import MqttSource, open_source

    source = open_source(args.run_dir, args.bundle, args.broker, mqtt_options(args, "", ""))
    auth, tls = None, None
    if not is_loopback(args.host):
        if not (args.tls_cert and args.tls_key):
            raise UserError(f"--host {args.host}: beyond loopback the dashboard needs --tls-cert and --tls-key "
                            "(browsers send its password with every request)")
        if not isinstance(source, MqttSource):
            raise UserError(f"--host {args.host}: a finished run is served on loopback only (it has no observer "
                            "account to guard it); copy the run directory instead")
        auth, tls = BasicAuth(source.bundle.username, source.bundle.password), Tls(args.tls_cert, args.tls_key)
    elif args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise UserError("--tls-cert and --tls-key go together")
        tls = Tls(args.tls_cert, args.tls_key)
    server = DashboardServer(source.view, args.host, args.port, auth, tls)
    try:
        source.start()
        announce(server, source, auth is not None)
        if args.open:
            webbrowser.open(server.url)
        server.run()
    finally:
        source.stop()
    return 0


def announce(server: DashboardServer, source: LabSource, guarded: bool) -> None:
    what = "live lab at" if source.mode == "live" else "finished run"
    print(f"edge-mcepl dashboard: {what} {source.where}", flush=True)
    print(f"  open {server.url}" + ("  (user and password: the observer bundle's)" if guarded else "")
          + "  — Ctrl-C stops it", flush=True)
