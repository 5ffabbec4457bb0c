"""One agent of a device lab: the simulator's agent, with its neighbours over MQTT.

:class:`Join` holds one agent's phases, one method each: read the lab config, build the agent
(exactly as the simulator does, refusing a different weights fingerprint), restore its checkpoint,
connect, wait for the neighbours, send its last mask again, run rounds, finish;
:class:`~.host.Host` runs them in order for every agent the process hosts. A round is local step →
publish → gather (round deadline, bounded staleness: the transport decides) → aggregate →
consensus step → metrics row, last mask sent (``sent.mcpl``) and checkpoint, so a restarted agent
resumes after its last completed round — and first publishes that round's mask again: a
neighbour one round behind may have received it before it stopped too, and lost it with its
inbox (QoS 1 acknowledges on arrival), so a lab restarted together (``lab --resume``) goes on
exactly where it stopped.

Longer than most modules on purpose: it is one agent's whole lifecycle, and every phase shares
the same connection, transport, stop flag and state folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import signal
import time
from typing import Any

import torch

from ..agent import Agent
from ..algorithms.params import Retention
from ..atomic import atomic_write
from ..checkpoint import load_checkpoint, restore_agent, save_checkpoint
from ..comm.client import BrokerAddress, MqttConnection, fetch_retained, status_payload
from ..comm.mqtt_transport import MqttTransport
from ..comm.topics import check_lab_name, config_topic, mask_topic, status_topic
from ..config import LabConfig
from ..data.resolve import LabData
from ..errors import UserError
from ..metrics import MetricsLog, read_completed_rows, write_metrics
from ..nn.layers import MaskedConv2d
from ..nn.weights import FixedWeights, generate_fixed_weights
from ..nn.zoo import MaskedNetwork, build_model
from ..profiles import load_profile
from ..run_dir import FINAL_MASK_FILE, METRICS_FILE, AgentSettings, RunIdentity, write_agent_result
from ..simulator import agent_record, build_agent
from ..topology import Topology
from ..wire.envelope import CodecError, read_common_header
from ..wire.masks import is_delta
from ..wire.signing import MessageAuth, decode_key, private_key, public_key, public_text, run_id_bytes
from .envelope import parse_envelope
from .limits import lab_limits
from .options import HostedAgent, JoinOptions, StopFlag
from .plan import AgentPlan, plan_agent
from .progress import Progress
from .schema import LabMessage, LabSettings
from .signature import verify_envelope

log = logging.getLogger(__name__)

EXIT_NEW_RUN = 3
SENT_FILE = "sent.mcpl"  # the mask of the last completed round, as published


class _Transport(MqttTransport):
    """The MQTT transport, remembering the message it published last (saved with each completed round)."""

    last_published = b""

    def publish(self, sender: int, round: int, payload: bytes) -> None:
        self.last_published = payload
        super().publish(sender, round, payload)


class Join:
    """The phases of one agent's part in a lab; each method leaves what the next one needs on ``self``."""

    # set by read_config
    envelope: LabMessage  # the lab config message as published (its config: self.config, planned)
    plan: AgentPlan
    config: LabConfig
    settings: LabSettings
    # set by build_agent
    agent: Agent
    classes: list[int]
    static: dict[str, Any]  # the metrics fields that do not change from round to round
    # set by connect
    conn: MqttConnection
    transport: _Transport
    info: dict[str, Any]  # what every status message of this agent carries

    def __init__(self, opts: JoinOptions, hosted: HostedAgent, stop: StopFlag) -> None:
        self.opts, self.stop, self.say = opts, stop, opts.log
        self.bundle = bundle = hosted.bundle
        assert bundle.signing_key is not None, "an agent's bundle"
        self.lab, self.me = check_lab_name(bundle.lab), hosted.agent_id
        self.signing_key = bundle.signing_key
        self.mqtt = dataclasses.replace(opts.mqtt, username=bundle.username, password=bundle.password)
        self.address = BrokerAddress.parse(opts.broker)
        self.profile = load_profile(opts.profile) if opts.profile else None
        self.state_dir = hosted.state_dir
        self.ckpt_path, self.metrics_path = self.state_dir / "checkpoint.npz", self.state_dir / METRICS_FILE
        self.sent_path = self.state_dir / SENT_FILE
        self.statuses: dict[int, dict] = {}  # neighbours' latest status in this run (paho thread writes)
        self.progress = Progress()  # totals since round 1, published with every status
        self.start = self.done_rounds = 0
        self.began = self.published = 0.0  # when this round's local step began and its mask went out

    # -- phases (:class:`~.host.Host` runs them in order for every agent of the process) -------------

    def prepare(self) -> None:
        """The state folder, and the lab CA of the bundle pinned in it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._pin_lab_ca()

    def fetch_config(self) -> bytes:
        """The retained lab config message, as this agent's account reads it."""
        lab, me, opts = self.lab, self.me, self.opts
        payload = fetch_retained(self.address, self.mqtt, config_topic(lab),
                                 f"edge-mcepl-{lab}-agent-{me}-cfg-{secrets.token_hex(3)}", opts.config_timeout,
                                 name=f"agent {me}", stop=self.stop.event)
        if payload is None:
            if self.stop:
                raise KeyboardInterrupt
            raise UserError(f"no lab config for lab {lab!r} on {self.address.url} after {opts.config_timeout:g} s "
                            f"(topic {config_topic(lab)}; is `edge-mcepl broker CONFIG.yaml` running for this lab?)")
        return payload

    def read_config(self, payload: bytes) -> None:
        """The lab config, validated, and this agent's plan (retention, batch size, threads)."""
        lab, me, opts = self.lab, self.me, self.opts
        env = parse_envelope(payload, lab, self.state_dir / "lab-files", opts.data_dir,
                             lab_public_key=self.bundle.lab_public_key)
        self.envelope = env.message
        if not 0 <= me < env.config.agents:
            raise UserError(f"bundle: agent {me}, but lab {lab!r} has agents 0..{env.config.agents - 1}")
        entry = self.envelope.roster[me]
        if entry.public_key != public_text(self.signing_key, "bundle signing_key"):
            raise UserError(f"bundle: its signing key is not agent {me}'s in the lab's roster (a bundle of another "
                            "enrolment of this lab? take the broker's current bundles/)")
        if self.profile is None and entry.profile:
            self.profile = load_profile(entry.profile)
            self.say(f"agent {me}: profile {self.profile.name}, as the lab's roster assigns")
        self.plan = plan_agent(env, me, self.profile, opts.threads)
        self.config, self.settings = self.plan.config, self.envelope.settings
        self.say(f"agent {me}: run {self.envelope.run_id}, {self.config.agents} agents, {self.config.rounds} rounds, "
                 f"model {self.config.model}, deadline {self.settings.round_deadline_s:g} s, max staleness "
                 f"{self.settings.max_staleness}")
        for note in self.plan.notes:
            self.say(f"agent {me}: {note}")

    def fixed_weights(self, data: LabData) -> tuple[MaskedNetwork, FixedWeights]:
        """The model's template and its fixed weights, refused unless their fingerprint is the lab's."""
        config = self.config
        template = build_model(config.model, data.train.num_classes)
        fixed = generate_fixed_weights(template, config.model, config.seed, config.weights)
        if fixed.fingerprint_hex != self.envelope.fingerprint:
            raise UserError(f"weights fingerprint mismatch: the lab's is {self.envelope.fingerprint}, this device "
                            f"generated {fixed.fingerprint_hex} (model {config.model}, seed {config.seed}, "
                            f"{config.weights} weights, {data.train.num_classes} classes, torch {torch.__version__}) "
                            "— refusing to train")
        return template, fixed

    def build_agent(self, data: LabData, template: MaskedNetwork, fixed: FixedWeights, topology: Topology,
                    own_test_copy: bool) -> None:
        """The simulator's agent ``me`` on the process's data and fixed weights.

        ``own_test_copy``: keep a copy of only this agent's test images, so that the full test set
        can be freed (one agent per process); else the agent indexes the test set its process
        shares, as in the simulator. Same images, same order either way: identical evaluation.
        """
        config, me = self.config, self.me
        published, computed = self.envelope.neighbours, list(topology.neighbours(me))
        if published and computed != published.get(me):
            raise UserError(f"topology mismatch: the lab says agent {me}'s neighbours are "
                            f"{published.get(me)}, this device computed {computed}")
        self.agent = agent = build_agent(config, data, topology, fixed, me, declared=self._declared(),
                                         auth=self._auth())
        indices = agent.test_indices.cpu().numpy()
        if own_test_copy:
            agent.test_data = data.test.subset(indices)
            agent.test_indices = torch.arange(len(indices))
        self.classes = list(data.partitions[me].classes)
        self.say(f"agent {me}: {data.description}; {len(agent.train_data)} train / {len(indices)} test images, "
                 f"classes {self.classes}; neighbours {list(agent.neighbours)}; fingerprint "
                 f"{fixed.fingerprint_hex} ✓")
        self.static = {"classes": self.classes, "retention_conv": agent.rule.retention.conv,
                       "width": agent.rule.retention.width,
                       "conv_layers": sum(isinstance(m, MaskedConv2d) for _, m in template.masked_layers()),
                       "filters": [shape[0] for shape in agent.layer_shapes]}

    def restore_checkpoint(self) -> None:
        """Resume after the last completed round (``--fresh``: start over); metrics keep only those rounds."""
        if self.opts.fresh:
            for p in (self.ckpt_path, self.metrics_path, self.sent_path, self.state_dir / FINAL_MASK_FILE):
                p.unlink(missing_ok=True)
        if self.ckpt_path.exists():
            ckpt = load_checkpoint(self.ckpt_path)
            restore_agent(self.agent, ckpt, str(self.ckpt_path), lab=self.lab, run_id=self.envelope.run_id)
            self.start = ckpt.next_round
            self.say(f"agent {self.me}: resuming from checkpoint {self.ckpt_path} after round {self.start} of "
                     f"{self.config.rounds}")
        self.done_rounds = self.start
        done = [r for r in read_completed_rows(self.metrics_path) if r["round"] <= self.start]  # rounds from 1
        write_metrics(self.metrics_path, done)
        self.progress = Progress.of_rows(done)

    def connect(self) -> None:
        """A persistent session (masks sent while away are queued), the neighbours' topics, status online."""
        lab, me, agent = self.lab, self.me, self.agent
        offline = status_payload("offline", me, run_id=self.envelope.run_id, reason="connection lost")
        client_id = f"edge-mcepl-{lab}-{self.envelope.run_id[:8]}-agent-{me}"
        self.conn = conn = MqttConnection(self.address, self.mqtt, client_id, persistent=True,
                                          will=(status_topic(lab, me), offline), name=f"agent {me}")
        limits = lab_limits(self.config, len(agent.neighbours), self.settings.max_staleness)
        self.transport = _Transport(conn, lab, me, max_staleness=self.settings.max_staleness,
                                    max_message_bytes=limits.message_bytes, inbox_budget_bytes=limits.inbox_bytes,
                                    max_ahead=limits.ahead_rounds, drop_incoming=self.opts.drop_incoming)
        if self.opts.drop_incoming:
            self.say(f"agent {me}: losing {self.opts.drop_incoming:.0%} of the neighbours' messages on purpose "
                     "(--drop-incoming)")
        self.transport.stop = self.stop.event
        conn.on(status_topic(lab, "+"), self._on_status)
        conn.on(config_topic(lab), self._on_config)
        self.transport.listen(me, agent.neighbours, agent.decode_message)
        conn.subscribe([status_topic(lab, j) for j in agent.neighbours] + [config_topic(lab)])
        self.transport.set_round(self.start)  # before connecting: the queued messages are judged from here
        conn.connect()
        self._ask_for_what_may_be_lost()
        self.info = {"run_id": self.envelope.run_id, "rounds": self.config.rounds,
                     "retention": agent.rule.retention.conv, "profile": self.profile.name if self.profile else None,
                     "pid": os.getpid()}
        conn.publish(status_topic(lab, me), status_payload("online", me, round=self.start, **self.info,
                                                           **self.progress.fields()), retain=True)

    def _ask_for_what_may_be_lost(self) -> None:
        """Ask every neighbour for its masks after the newest this agent holds, standing alone.

        A new process holds none; a resumed one holds what its checkpoint kept, but it may have
        received (and acknowledged: QoS 1) later masks before it stopped, and lost them. The
        neighbours send those they still have again (docs/wire-format.md#delta), so a restarted
        device loses no round it can still use — and decodes their next deltas.
        """
        history = self.agent.rule.history
        if history is None:  # the rule's messages never refer to earlier ones
            return
        floor = max(0, self.start - self.settings.max_staleness)
        since = {}
        for j in self.agent.neighbours:
            newest = history.newest_round(j)
            since[j] = floor if newest is None else max(floor, newest + 1)
        self.transport.ask_keyframes(since)

    def wait_for_neighbours(self, began: float) -> None:
        """Before the first round to run: until every neighbour is online, or the start timeout after ``began``
        (``time.monotonic()``: the process's agents wait out one timeout together, not one each)."""
        if self.start >= self.config.rounds or self.stop:
            return
        neighbours, timeout = self.agent.neighbours, self.settings.start_timeout_s
        announced = False
        while not self.stop and time.monotonic() < began + timeout and any(j not in self.statuses for j in neighbours):
            if not announced and time.monotonic() - began > 1.0:  # retained statuses arrive at once
                waiting = [j for j in neighbours if j not in self.statuses]
                self.say(f"agent {self.me}: waiting up to {timeout:g} s for neighbours {waiting} to come online")
                announced = True
            self.stop.event.wait(0.1)
        # Nothing reads the neighbours' statuses after this: stop receiving one per neighbour and round
        # (an observer — the dashboard, `edge-mcepl lab` — is their only reader from here on).
        self.conn.unsubscribe([status_topic(self.lab, j) for j in neighbours])

    def send_last_mask_again(self) -> None:
        """A resumed agent's mask of its last completed round, published again (see the module docstring).

        Once the neighbours are online (subscribed: a restarted built-in broker has no sessions to
        queue it in). Only that round's, written before this run's checkpoint: never another run's.
        A delta is sent again as a keyframe of the same masks (a neighbour that restarted too holds
        no base); a neighbour that holds the delta counts it as a duplicate.
        """
        if self.start == 0 or not self.sent_path.is_file():
            return
        payload = self.sent_path.read_bytes()
        try:
            header = read_common_header(payload)
        except CodecError:
            return
        if (header.sender, header.round) != (self.me, self.start - 1):
            return
        if is_delta(payload):
            payload = next((copy for _, copy in self.agent.standalone_copies(header.round)), payload)
        self.conn.publish(mask_topic(self.lab, self.me), payload, qos=1)

    def begin(self, t: int) -> None:
        """Round ``t``'s local step and publish (the process's agents all publish before any gathers)."""
        self.began = time.time()
        self.agent.begin_round(t, self.transport)
        self.published = self.transport.published_at[t]

    def end(self, t: int) -> dict[str, Any] | None:
        """Round ``t``'s gather, aggregate and consensus step: its metrics row (None: a signal came while gathering)."""
        agent, transport, config = self.agent, self.transport, self.config
        report = agent.finish_round(t, transport, timeout=self.settings.round_deadline_s)
        gathered = time.time()
        if self.stop:
            return None
        stats = transport.take_stats()
        row: dict[str, Any] = {"round": t + 1, "agent": self.me, **report.fields(), **agent.rule.mask_stats()}
        row.update(rejected=report.rejected + stats.rejected, missing_base=report.missing_base + stats.missing_base)
        evaluated = time.time()
        if (t + 1) % config.eval_every == 0 or t == config.rounds - 1:
            row.update(agent.evaluation())
        ended, began, published = time.time(), self.began, self.published
        row.update(self.static, train_seconds=round(published - began, 6), round_seconds=round(ended - began, 6),
                   gather_seconds=round(transport.last_gather_end - published, 6),
                   aggregate_seconds=round(gathered - transport.last_gather_end, 6),
                   eval_seconds=round(ended - evaluated, 6), published_at=round(published, 6),
                   arrivals={str(j): round(a, 6) for j, a in transport.last_arrivals.items()},
                   stale=report.stale, duplicates=stats.duplicates, late=stats.late, dropped=stats.dropped,
                   rejected_reasons=dict(sorted(stats.reasons.items())),
                   degree=len(agent.neighbours))
        return row

    def complete(self, t: int, row: dict[str, Any], metrics: MetricsLog) -> None:
        """Round ``t`` done: its metrics row, the mask sent and the checkpoint on disk, a status update."""
        metrics.write([row])
        atomic_write(self.sent_path, self.transport.last_published, durable=True)  # before the checkpoint
        save_checkpoint(self.ckpt_path, self.agent, t + 1, lab=self.lab, run_id=self.envelope.run_id)
        self.done_rounds = t + 1
        self.progress.add(row)
        self.conn.publish(status_topic(self.lab, self.me), status_payload(
            "online", self.me, round=t + 1, **self.info, **self.progress.fields()), retain=True)
        self._say_round(t, row)

    def finish(self) -> int:
        """The exit status; a finished agent leaves its final mask and ``agent.json`` for the run directory."""
        me, config = self.me, self.config
        if self.stop.new_run:
            self.say(f"agent {me}: the lab was restarted with a new config (run {self.stop.new_run}); stopping after "
                     f"round {self.done_rounds}. Rejoin with --fresh to take part in the new run.")
            return self._close("offline", EXIT_NEW_RUN, reason="new run")
        if self.stop:
            name = signal.Signals(self.stop.signum).name if self.stop.signum else "signal"
            self.say(f"agent {me}: {name}: stopped after round {self.done_rounds}/{config.rounds}; checkpoint "
                     f"{self.ckpt_path} is current — run the same command again to resume")
            return self._close("offline", 128 + (self.stop.signum or 2), reason=name)
        message = self.envelope
        identity = RunIdentity(model=config.model, num_classes=message.num_classes, weights_seed=config.seed,
                               weights=config.weights, fingerprint=message.fingerprint, rounds=config.rounds)
        mask = self.agent.file_message(config.rounds) if self.agent.rule.learns_masks else None
        mask_path = write_agent_result(self.state_dir, identity, agent_record(self.agent, self.classes), mask,
                                       lab=self.lab, run_id=message.run_id,
                                       profile=self.profile.name if self.profile else None, notes=list(self.plan.notes),
                                       settings=AgentSettings.of_config(config))
        self.say(f"agent {me}: done — {config.rounds} rounds; "
                 + (f"final mask {mask_path}" if mask_path else f"{config.algorithm.name} learns weights: no mask"))
        return self._close("done", 0)

    # -- helpers --------------------------------------------------------------------------------

    def _pin_lab_ca(self) -> None:
        """The lab CA of the bundle, written beside the state, is what a TLS broker must chain to
        (unless ``--cafile`` says otherwise)."""
        if self.bundle.ca and self.mqtt.ca_file is None:
            path = self.state_dir / "lab-ca.pem"
            atomic_write(path, self.bundle.ca)
            self.mqtt = dataclasses.replace(self.mqtt, ca_file=str(path))

    def _declared(self) -> dict[int, Retention]:
        """Every agent's retention as the roster declares it: what its masks must keep."""
        return {j: Retention(e.retention.conv, e.retention.linear, e.retention.width)
                for j, e in self.envelope.roster.items()}

    def _auth(self) -> MessageAuth:
        """This agent's signing key and the roster's public keys, bound to this run."""
        roster = {j: public_key(decode_key(e.public_key, f"roster agent {j}")) for j, e in self.envelope.roster.items()}
        return MessageAuth(run_id_bytes(self.envelope.run_id), private_key(decode_key(self.signing_key, "signing_key")),
                           roster)

    def _say_round(self, t: int, row: dict[str, Any]) -> None:
        self.say(f"agent {self.me}: round {t + 1}/{self.config.rounds} loss {row['loss']:.4f} heard "
                 f"{row['neighbours_heard']}/{len(self.agent.neighbours)}"
                 + (f" ({row['stale']} stale)" if row["stale"] else "")
                 + (f" rejected {row['rejected']}" if row["rejected"] else "")
                 + f" train {row['train_seconds']:.2f}s wait {row['gather_seconds']:.2f}s"
                 + (f" accuracy {row['accuracy']:.4f}" if "accuracy" in row else ""))

    def _close(self, state: str, code: int, **extra: Any) -> int:
        if state == "done":  # a finished agent's persistent session should not queue more masks
            self.conn.unsubscribe([mask_topic(self.lab, j) for j in self.agent.neighbours])
        self.conn.close(last=(status_topic(self.lab, self.me), status_payload(
            state, self.me, round=self.done_rounds, **self.info, **self.progress.fields(), **extra)))
        return code

    def _on_status(self, _topic: str, payload: bytes) -> None:  # paho thread
        try:
            st = json.loads(payload)
            if isinstance(st, dict) and st.get("run_id") == self.envelope.run_id:
                self.statuses[int(st["agent"])] = st
        except (ValueError, KeyError, TypeError):
            pass

    def _on_config(self, _topic: str, payload: bytes) -> None:  # paho thread
        """A new lab config with another run id stops this run — only if the lab key signed it."""
        try:
            verify_envelope(payload, self.bundle.lab_public_key, f"lab config on {config_topic(self.lab)}")
            new_run = json.loads(payload).get("run_id")
        except UserError as exc:
            log.warning("agent %d: ignored: %s", self.me, exc)
            return
        except (ValueError, AttributeError):
            return
        if new_run and new_run != self.envelope.run_id:
            self.stop.stop_for_new_run(new_run)
