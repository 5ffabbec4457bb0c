"""``edge-mcepl join``: this device takes part in a lab over MQTT (train → publish → gather → aggregate)."""

from __future__ import annotations

import argparse
import logging
import os

from ..errors import UserError

PASSWORD_ENV = "EDGE_MCEPL_MQTT_PASSWORD"


def add_mqtt_options(parser: argparse.ArgumentParser) -> None:
    """Broker credentials and TLS options shared by the commands that connect as a client."""
    g = parser.add_argument_group("MQTT connection")
    g.add_argument("--credentials", help="credentials file written by `edge-mcepl broker` (takes this agent's entry)")
    g.add_argument("--username", help="MQTT user name (default with --credentials: agent-N)")
    g.add_argument("--password", help=f"MQTT password (prefer --credentials or ${PASSWORD_ENV}: argv is visible to ps)")
    g.add_argument("--cafile", help="CA certificate to verify an mqtts:// broker")
    g.add_argument("--certfile", help="client certificate (mutual TLS)")
    g.add_argument("--keyfile", help="client key (mutual TLS)")
    g.add_argument("--tls-insecure", action="store_true", help="do not check the broker certificate's host name")
    g.add_argument("--mqtt", default="auto", choices=("auto", "5", "3.1.1"),
                   help="MQTT version (auto: 5, falling back to 3.1.1)")
    g.add_argument("--connect-timeout", type=float, default=20.0, help="seconds to reach the broker (default 20)")


def mqtt_options(args: argparse.Namespace, agent_id: int | None, lab: str | None):
    from ..comm.broker.credentials import ADMIN_USER, LabCredentials
    from ..comm.client import MqttOptions

    username, password = args.username, args.password or os.environ.get(PASSWORD_ENV)
    if args.credentials:
        creds = LabCredentials.load(args.credentials)
        if lab is not None and creds.lab != lab:
            raise UserError(f"--credentials {args.credentials}: is for lab {creds.lab!r}, not {lab!r}")
        if agent_id is None:
            username, password = username or ADMIN_USER, password or creds.admin_password
        else:
            user, pw = creds.for_agent(agent_id, f"--credentials {args.credentials}")
            username, password = username or user, password or pw
    if password is not None and username is None:
        raise UserError("--password needs --username (or --credentials)")
    return MqttOptions(username=username, password=password, ca_file=args.cafile, cert_file=args.certfile,
                       key_file=args.keyfile, tls_insecure=args.tls_insecure, protocol=args.mqtt,
                       connect_timeout=args.connect_timeout)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("join", help="join a device lab over MQTT and train this device's agent")
    p.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--lab", required=True, help="lab name (the config's `name`)")
    p.add_argument("--agent-id", type=int, required=True, help="this device's agent id, 0..agents-1")
    p.add_argument("--profile", help="device profile: a YAML file or a bundled name (rpi4, rpi5, jetson-orin-nano, "
                                     "laptop, gpu-workstation)")
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ or the MNIST idx files")
    p.add_argument("--state-dir", help="checkpoint, metrics and final mask (default edge-mcepl-state/LAB/agent_NNN)")
    p.add_argument("--threads", type=int, help="torch threads (default: the profile's, else the lab's)")
    p.add_argument("--fresh", action="store_true", help="ignore and delete this agent's checkpoint; start at round 0")
    p.add_argument("--config-timeout", type=float, default=120.0,
                   help="seconds to wait for the lab config on the broker (default 120)")
    p.add_argument("--drop-incoming", type=float, default=0.0, metavar="FRACTION",
                   help="lose this fraction of the neighbours' messages on arrival, as a lossy link would "
                        "(to test a lab's recovery; default 0)")
    p.add_argument("--load-lock", help=argparse.SUPPRESS)  # used by `edge-mcepl lab` to serialise data loading
    p.add_argument("--verbose", action="store_true", help="log MQTT details (reconnects are always logged)")
    add_mqtt_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..devicelab.join import JoinOptions, run_join

    if args.verbose:
        logging.getLogger("edge_mcepl").setLevel(logging.INFO)
    if args.agent_id < 0:
        raise UserError(f"--agent-id {args.agent_id}: must be ≥ 0")
    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise UserError(f"--threads {args.threads}: must be in 1..1024")
    if not 0 <= args.drop_incoming < 1:
        raise UserError(f"--drop-incoming {args.drop_incoming:g}: must be in [0, 1)")
    return run_join(JoinOptions(
        broker=args.broker, lab=args.lab, agent_id=args.agent_id, mqtt=mqtt_options(args, args.agent_id, args.lab),
        profile=args.profile, data_dir=args.data_dir and os.path.abspath(args.data_dir), state_dir=args.state_dir,
        threads=args.threads, fresh=args.fresh, config_timeout=args.config_timeout, load_lock=args.load_lock,
        drop_incoming=args.drop_incoming))
