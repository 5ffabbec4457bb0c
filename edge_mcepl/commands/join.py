"""``edge-mcepl join``: this device takes part in a lab over MQTT (train → publish → gather → aggregate)."""

from __future__ import annotations

import argparse
import logging
import os

from ..errors import UserError


def add_mqtt_options(parser: argparse.ArgumentParser) -> None:
    """TLS and protocol options of a client; its account and keys come from its bundle."""
    g = parser.add_argument_group("MQTT connection")
    g.add_argument("--cafile", help="CA certificate to verify an mqtts:// broker (default: the lab CA in the bundle)")
    g.add_argument("--certfile", help="client certificate (mutual TLS)")
    g.add_argument("--keyfile", help="client key (mutual TLS)")
    g.add_argument("--tls-insecure", action="store_true", help="do not check the broker certificate's host name")
    g.add_argument("--mqtt", default="auto", choices=("auto", "5", "3.1.1"),
                   help="MQTT version (auto: 5, falling back to 3.1.1)")
    g.add_argument("--connect-timeout", type=float, default=20.0, help="seconds to reach the broker (default 20)")


def mqtt_options(args: argparse.Namespace, username: str, password: str):
    from ..comm.client import MqttOptions

    return MqttOptions(username=username, password=password, ca_file=args.cafile, cert_file=args.certfile,
                       key_file=args.keyfile, tls_insecure=args.tls_insecure, protocol=args.mqtt,
                       connect_timeout=args.connect_timeout)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("join", help="join a device lab over MQTT and train this device's agent")
    p.add_argument("--bundle", required=True,
                   help="this device's bundle, written by `edge-mcepl broker` (bundles/agent-N.yaml): its lab, "
                        "agent id, broker, account and signing key")
    p.add_argument("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT (default: the bundle's)")
    p.add_argument("--profile", help="device profile: a YAML file or a bundled name (rpi4, rpi5, jetson-orin-nano, "
                                     "laptop, gpu-workstation); default: the one the lab's roster assigns")
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
    from ..comm.broker.bundles import load_bundle
    from ..devicelab.join import JoinOptions, run_join

    if args.verbose:
        logging.getLogger("edge_mcepl").setLevel(logging.INFO)
    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise UserError(f"--threads {args.threads}: must be in 1..1024")
    if not 0 <= args.drop_incoming < 1:
        raise UserError(f"--drop-incoming {args.drop_incoming:g}: must be in [0, 1)")
    bundle = load_bundle(args.bundle)
    if bundle.role != "agent" or bundle.agent_id is None:
        raise UserError(f"--bundle {args.bundle}: an observer's bundle cannot join (it has no signing key)")
    return run_join(JoinOptions(
        bundle=bundle, broker=args.broker or bundle.broker, mqtt=mqtt_options(args, bundle.username, bundle.password),
        profile=args.profile, data_dir=args.data_dir and os.path.abspath(args.data_dir), state_dir=args.state_dir,
        threads=args.threads, fresh=args.fresh, config_timeout=args.config_timeout, load_lock=args.load_lock,
        drop_incoming=args.drop_incoming))
