"""``edge-mcepl join``: this device takes part in a lab over MQTT (train → publish → gather → aggregate)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..devicelab.options import HostedAgent


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


def mqtt_options(args: argparse.Namespace, username: str | None, password: str | None):
    from ..comm.client import MqttOptions

    return MqttOptions(username=username, password=password, ca_file=args.cafile, cert_file=args.certfile,
                       key_file=args.keyfile, tls_insecure=args.tls_insecure, protocol=args.mqtt,
                       connect_timeout=args.connect_timeout)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("join", help="join a device lab over MQTT and train this device's agent(s)")
    p.add_argument("--bundle", required=True,
                   help="this device's bundle, written by `edge-mcepl broker` (bundles/agent-N.yaml): its lab, "
                        "agent id, broker, account and signing key; with --agent-id, the folder of bundles")
    p.add_argument("--agent-id", metavar="IDS",
                   help="host several agents in this process, e.g. 0-49 or 0-9,20 (their bundles: "
                        "BUNDLE/agent-N.yaml); they share one copy of the data and the fixed weights")
    p.add_argument("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT (default: the bundle's)")
    p.add_argument("--profile", help="device profile: a YAML file or a bundled name (rpi4, rpi5, jetson-orin-nano, "
                                     "laptop, gpu-workstation); default: the one the lab's roster assigns")
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ or the MNIST idx files")
    p.add_argument("--state-dir", help="checkpoint, metrics and final mask (default edge-mcepl-state/LAB/agent_NNN); "
                                       "with --agent-id, the folder holding each agent's agent_NNN/")
    p.add_argument("--threads", type=int, help="torch threads (default: the profile's, else the lab's)")
    p.add_argument("--fresh", action="store_true", help="ignore and delete the agents' checkpoints; start at round 0")
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
    from ..devicelab.host import run_join
    from ..devicelab.options import JoinOptions

    if args.verbose:
        logging.getLogger("edge_mcepl").setLevel(logging.INFO)
    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise UserError(f"--threads {args.threads}: must be in 1..1024")
    if not 0 <= args.drop_incoming < 1:
        raise UserError(f"--drop-incoming {args.drop_incoming:g}: must be in [0, 1)")
    agents = hosted_agents(args.bundle, args.agent_id, args.state_dir)
    first = agents[0].bundle
    return run_join(JoinOptions(
        agents=agents, broker=args.broker or first.broker, mqtt=mqtt_options(args, None, None), profile=args.profile,
        data_dir=args.data_dir and os.path.abspath(args.data_dir), threads=args.threads, fresh=args.fresh,
        config_timeout=args.config_timeout, load_lock=args.load_lock, drop_incoming=args.drop_incoming))


def hosted_agents(bundle: str, agent_ids: str | None, state_dir: str | None) -> list[HostedAgent]:
    """``--bundle FILE``: that agent, in ``--state-dir``; ``--bundle DIR --agent-id IDS``: each agent's bundle in
    DIR, each in ``--state-dir``/agent_NNN (default edge-mcepl-state/LAB/agent_NNN)."""
    from ..comm.broker.bundles import agent_bundle_name, load_bundle
    from ..devicelab.options import HostedAgent, default_state_dir, parse_agent_ids

    folder = Path(bundle)
    if agent_ids is None:
        if folder.is_dir():
            raise UserError(f"--bundle {bundle} is a folder: say which of its agents this process runs with "
                            "--agent-id (e.g. 0-49)")
        paths = [folder]
    else:
        if not folder.is_dir():
            raise UserError(f"--agent-id needs --bundle to be a folder of bundles (the broker's bundles/), "
                            f"not {bundle}")
        paths = [folder / agent_bundle_name(i) for i in parse_agent_ids(agent_ids)]
    agents = []
    for path in paths:
        b = load_bundle(path)
        if b.role != "agent" or b.agent_id is None:
            raise UserError(f"--bundle {path}: an observer's bundle cannot join (it has no signing key)")
        if agent_ids is None:
            where = Path(state_dir) if state_dir else default_state_dir(b.lab, b.agent_id)
        else:
            if path.name != agent_bundle_name(b.agent_id):
                raise UserError(f"--bundle {path}: holds agent {b.agent_id}'s bundle, not the agent its name says")
            where = (Path(state_dir) / f"agent_{b.agent_id:03d}" if state_dir
                     else default_state_dir(b.lab, b.agent_id))
        agents.append(HostedAgent(b, where))
    return agents
