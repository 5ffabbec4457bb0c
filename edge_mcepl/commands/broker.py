"""``edge-mcepl broker``: run the lab's MQTT broker (mosquitto, or the built-in fallback) and publish its config."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write
from ..errors import UserError
from .dashboard import add_dashboard_option

if TYPE_CHECKING:  # imported when the command runs: `edge-mcepl --help` stays fast
    from ..comm.broker.launcher import BrokerHandle
    from ..comm.broker.mosquitto import Bridge
    from ..config import LabConfig
    from ..devicelab.schema import LabSettings

RUN_STATE_FILE = "lab-run.json"  # the published config's run id and digest, in the broker's directory


def add_lab_settings(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("device-lab settings (published with the lab config)")
    g.add_argument("--round-deadline", type=float, default=60.0,
                   help="seconds an agent waits for its neighbours' masks after publishing its own (default 60)")
    g.add_argument("--max-staleness", type=int, default=1,
                   help="a missing mask may be replaced by that neighbour's mask from ≤ K rounds back (default 1)")
    g.add_argument("--start-timeout", type=float, default=600.0,
                   help="seconds an agent waits for its neighbours to come online before round 0 (default 600)")


def lab_settings(args: argparse.Namespace) -> LabSettings:
    """The options of :func:`add_lab_settings`, validated like the envelope's ``settings`` (no torch needed).

    An option left None (``lab`` sets no defaults) takes the model's default and is absent from the
    result's ``model_fields_set``, which says what was given (``lab --resume`` keeps the run's).
    """
    from ..devicelab.schema import LabSettings
    from ..validation import validate

    options = {"round_deadline_s": args.round_deadline, "max_staleness": args.max_staleness,
               "start_timeout_s": args.start_timeout}
    return validate(LabSettings, {k: v for k, v in options.items() if v is not None}, "command line")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run an MQTT broker for a device lab (mosquitto, or a built-in fallback)")
    p.add_argument("config", nargs="?", help="lab config YAML: publish it (retained) for `join` to fetch")
    p.add_argument("--lab", help="lab name (default: the config's name)")
    p.add_argument("--agents", type=int, help="number of agents (default: the config's)")
    p.add_argument("--rounds", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--preset", help="algorithm preset: reference or structured")
    p.add_argument("--profiles", help="device profiles, comma-separated, assigned to agents round-robin: the roster "
                                      "declares each agent's structure from its profile (default: the config's)")
    p.add_argument("--host", default="127.0.0.1", help="listener address (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=1883, help="listener port (default 1883; 0 = any free port)")
    p.add_argument("--dir", help="broker files: config, passwords, ACL, persistence (default runs/broker-LAB)")
    p.add_argument("--broker-kind", default="auto", choices=("auto", "mosquitto", "python"),
                   help="auto: mosquitto when installed, else the built-in Python broker")
    p.add_argument("--new-run", action="store_true", help="publish the config under a new run id even if unchanged")
    p.add_argument("--tls", default="auto", choices=("auto", "on", "off"),
                   help="auto (default): TLS with the lab's own CA when --host is not loopback; on: always; off: never")
    p.add_argument("--tls-cert", help="server certificate (mosquitto only): the listener speaks TLS (mqtts://)")
    p.add_argument("--tls-key", help="server key for --tls-cert")
    g = p.add_argument_group("site broker of a multi-site lab (docs/bridging.md)")
    g.add_argument("--bridge", metavar="URL",
                   help="bridge this broker to the lab's central broker (mqtt://HOST:PORT or mqtts://): every lab "
                        "topic both ways; --dir must hold a copy of the central broker's lab-secrets.yaml; the lab "
                        "config comes from the central broker (a config given here only sets the limits)")
    g.add_argument("--bridge-cafile", help="the central broker's CA (its tls/ca.crt), for an mqtts:// --bridge")
    g.add_argument("--site", help="this site's name in the bridge's client id (default: this host's name)")
    add_lab_settings(p)
    add_dashboard_option(p)
    p.set_defaults(func=run)


@dataclass
class _Published:
    """What this broker publishes for its lab: the config, who set what, and each agent's profile."""

    config: LabConfig
    explicit: list[str]
    envelope: dict
    profiles: dict[int, str]


def run(args: argparse.Namespace) -> int:
    from ..comm.broker.launcher import is_loopback, start_broker
    from ..dashboard.attached import attached_dashboard

    lab, agents, published = _lab(args)
    directory = Path(args.dir or Path("runs") / f"broker-{lab}")
    bridge = _bridge(args)
    limits: dict[str, Any] = {}  # start_broker's limits: its defaults without a lab config
    if published is not None:
        from ..devicelab.limits import broker_limits

        if bridge is None:
            _keep_run_id(directory / RUN_STATE_FILE, published, args.new_run)
        derived = broker_limits(published.config, published.envelope, lab_settings(args).max_staleness)
        limits = {"message_limit": derived.message_bytes, "queue_messages": derived.queue_messages,
                  "queue_bytes": derived.queue_bytes}
    handle = start_broker(directory, lab, agents, kind=args.broker_kind, host=args.host, port=args.port,
                          tls=args.tls, tls_cert=args.tls_cert, tls_key=args.tls_key, bridge=bridge, **limits)
    try:
        print(f"edge-mcepl broker: {handle.description}")
        url = handle.credentials.broker_url or handle.url
        print(f"  connection string: {url}")
        print(f"  lab secrets:       {handle.credentials_file}  (stays on this host: admin password, lab key)")
        print(f"  device bundles:    {handle.bundle(0).parent}/  (agent-N.yaml: give each device only its own; "
              "observer.yaml: read-only)")
        print(f"  broker files:      {handle.directory}")
        if limits:
            print(f"  limits:            messages ≤ {limits['message_limit']} bytes; ≤ {limits['queue_messages']} "
                  f"messages / {limits['queue_bytes']} bytes queued per client")
        if handle.ca_file is not None:
            print(f"  lab CA:            {handle.ca_file}  (in every bundle: devices pin it)")
        if not is_loopback(args.host) and not url.startswith("mqtts://"):
            print("  WARNING: listening beyond loopback without TLS: passwords and masks cross the network in clear")
        if bridge is not None:
            print(f"  bridged to:        {args.bridge}  (the central broker: the lab config and every lab topic "
                  "come and go through it)")
        elif published is not None:
            _publish(handle, url, published, directory / RUN_STATE_FILE)
        print(f"  join a device:     edge-mcepl join --bundle {handle.bundle(0)}")
        with attached_dashboard(handle, url, args.dashboard, lambda line: print(line, flush=True)):
            print("Ctrl-C stops the broker.", flush=True)
            _supervise(handle)
    finally:
        handle.stop()
        print("edge-mcepl broker: stopped", flush=True)
    return 0


def _supervise(handle: BrokerHandle) -> None:
    """Until SIGINT/SIGTERM: print the supervisor's restarts; a broker that stays down is an error."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    printed = 0
    while not stop.wait(1.0):
        notices = handle.restart_notices
        for line in notices[printed:]:
            print(f"  broker: {line}", flush=True)
        printed = len(notices)
        if handle.failed is not None:
            raise UserError(f"the broker is down: {handle.failed}")


def _bridge(args: argparse.Namespace) -> Bridge | None:
    """``--bridge URL`` as the site's link to the central broker (None without it); its options checked."""
    if args.bridge is None:
        if args.bridge_cafile or args.site:
            raise UserError(f"{'--bridge-cafile' if args.bridge_cafile else '--site'} needs --bridge URL")
        return None
    import socket

    from ..comm.broker.mosquitto import Bridge
    from ..comm.client import BrokerAddress

    address = BrokerAddress.parse(args.bridge, "--bridge")
    if address.tls != bool(args.bridge_cafile):
        raise UserError(f"--bridge {args.bridge}: " + ("an mqtts:// bridge needs --bridge-cafile (the central "
                                                       "broker's CA)" if address.tls else
                                                       "--bridge-cafile is for an mqtts:// bridge"))
    if args.new_run:
        raise UserError("--new-run: a site broker publishes no config (the central broker does)")
    site = args.site or socket.gethostname()
    if not site.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"--site {site!r}: letters, digits, '-' and '_' only")
    return Bridge(address.host, address.port, args.bridge_cafile, site)


def _lab(args: argparse.Namespace) -> tuple[str, int, _Published | None]:
    """(lab name, agents, what to publish or None) from a config YAML or --lab/--agents."""
    from ..comm.topics import check_lab_name

    if not args.config:
        if not args.lab or not args.agents:
            raise UserError("give a lab config YAML, or --lab NAME and --agents N (then publish the config later)")
        if args.profiles:
            raise UserError("--profiles needs a lab config: the roster declares each agent's structure")
        lab, agents, published = check_lab_name(args.lab, "--lab"), args.agents, None
    else:
        from ..config import load_config
        from ..devicelab.envelope import explicit_keys, make_envelope
        from ..devicelab.session import assign_profiles

        overrides = {"rounds": args.rounds, "agents": args.agents, "seed": args.seed, "eval_every": args.eval_every,
                     "algorithm.preset": args.preset}
        config = load_config(args.config, overrides)
        if args.lab and args.lab != config.name:
            raise UserError(f"--lab {args.lab}: the config {args.config} names the lab {config.name!r}")
        lab, agents = check_lab_name(config.name, f"{args.config}: name"), config.agents
        explicit = explicit_keys(args.config, overrides)
        profiles = assign_profiles(args.profiles.split(","), agents) if args.profiles else {}
        published = _Published(config, explicit, make_envelope(config, explicit, lab_settings(args)), profiles)
    if agents < 1:
        raise UserError(f"--agents {agents}: must be ≥ 1")
    return lab, agents, published


def _run_digest(published: _Published) -> str:
    """What defines the run: the config, the files and settings it publishes, and each agent's profile
    (another profile declares another retention in the roster: not the same run)."""
    from ..devicelab.envelope import envelope_digest

    return envelope_digest({**published.envelope, "profiles": {str(i): p for i, p in published.profiles.items()}})


def _keep_run_id(state_file: Path, published: _Published, new_run: bool) -> None:
    """An unchanged config (and profiles) keeps its run id, so devices can resume their checkpoints."""
    if state_file.exists() and not new_run:
        previous = json.loads(state_file.read_text())
        if previous.get("digest") == _run_digest(published):
            published.envelope["run_id"] = previous["run_id"]


def _publish(handle: BrokerHandle, url: str, published: _Published, state_file: Path) -> None:
    """Sign the envelope with the roster, publish it (retained) as the lab admin, remember its run id."""
    from ..comm.broker.credentials import ADMIN_USER
    from ..comm.client import BrokerAddress, MqttConnection, MqttOptions
    from ..comm.topics import config_topic
    from ..devicelab.envelope import publish_envelope
    from ..devicelab.plan import lab_roster
    from ..devicelab.signature import sign_envelope

    roster = lab_roster(published.config, published.explicit, published.profiles, handle.credentials)
    envelope = sign_envelope(published.envelope, roster, handle.credentials.lab_key)

    options = MqttOptions(ADMIN_USER, handle.credentials.admin_password,
                          ca_file=str(handle.ca_file) if handle.ca_file is not None else None)
    admin = MqttConnection(BrokerAddress.parse(url), options, f"edge-mcepl-{envelope['lab']}-broker-admin",
                           name="lab-admin").connect()
    publish_envelope(admin, envelope)
    admin.close()
    atomic_write(state_file, json.dumps({"run_id": envelope["run_id"], "digest": _run_digest(published)}))
    print(f"  lab config:        published on {config_topic(envelope['lab'])} (run {envelope['run_id']}, "
          f"weights fingerprint {envelope['fingerprint']})")
