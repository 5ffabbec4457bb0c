"""Bytes and time of the mask codecs on real masks, and the delta codec over whole runs → ``docs/codec.md``.

For every agent's final mask of RUN_DIR (``final/masks/*.mcpl``) it encodes with ``packbits``,
``rice`` and ``delta``, checks the round trip, and reports bits per weight, the entropy bound of
the per-layer densities, the ratio to a DSGD fp32 message of the same model, and median encode /
decode times. Top-k keeps exactly the same number of weights every round, so packbits' and Rice's
sizes on final masks are those of every round's message. A delta needs the previous mask: the
final mask with ``--flip-rate`` of each layer's bits swapped at random (kept count unchanged) — the
measured mean flip rate of the first ``--delta-run`` by default — stands in for it, for timing.

``--delta-run RUN [RUN ...]``: finished runs with ``algorithm.mask_codec: delta`` (live, or archived
under ``results/``: config and metrics are enough). From their
metrics rows (``bytes_sent`` = message bytes × degree, ``keyframe``), the mean bits per weight over
the whole run — headers, tags and keyframes included — per round (plotted to ``docs/codec.png``),
the keyframe share, and the ratios to DSGD and packbits.

Usage:
    python benchmarks/mask_codec.py runs/reproduce-full/mcepl-k4 [--delta-run RUN ...] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.reproduction.runs import metrics_path  # noqa: E402
from edge_mcepl.metrics import read_metrics  # noqa: E402
from edge_mcepl.nn.width import width_shapes  # noqa: E402
from edge_mcepl.nn.zoo import build_model  # noqa: E402
from edge_mcepl.run_dir import read_config  # noqa: E402
from edge_mcepl.simulator import build_topology_for  # noqa: E402
from edge_mcepl.wire.delta import MaskRecord  # noqa: E402
from edge_mcepl.wire.dense import message_size as fp32_message_size  # noqa: E402
from edge_mcepl.wire.envelope import RUN_ID_SIZE, SIGNATURE_SIZE  # noqa: E402
from edge_mcepl.wire.history import MaskHistory  # noqa: E402
from edge_mcepl.wire.masks import MASK_CODECS, decode_masks, encode_masks, message_size  # noqa: E402
from edge_mcepl.wire.signing import MessageAuth, simulation_keys  # noqa: E402

TARGET_BITS = 0.05  # issue 13: mean bits per weight over a 400-round paper run, everything included
PAPER_DELIVERIES = 208  # messages per round in the paper setting: Σ degrees of the reference graph (docs/lab.md)
SIGNING_TARGET_MS = 1.0  # issue 14: signing + verifying one message, on this CPU


def entropy_bits(masks: list[np.ndarray]) -> float:
    """Σ_layers n·H(density): the size of an ideal per-layer Bernoulli code."""
    total = 0.0
    for m in masks:
        p = float(m.mean())
        if 0 < p < 1:
            total += m.size * -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    return total


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def moved(masks: list[np.ndarray], flip_rate: float, seed: int) -> list[np.ndarray]:
    """``masks`` with ``flip_rate`` of each layer's bits swapped (half ones → zeros, half zeros → ones)."""
    rng = np.random.default_rng(seed)
    out = []
    for mask in masks:
        flat = mask.ravel().copy()
        on, off = np.flatnonzero(flat), np.flatnonzero(~flat)
        swaps = min(int(round(flat.size * flip_rate / 2)), len(on), len(off))
        flat[rng.choice(on, swaps, replace=False)] = False
        flat[rng.choice(off, swaps, replace=False)] = True
        out.append(flat.reshape(mask.shape))
    return out


# A lab's message is signed by its sender and verified by each receiver (wire/signing.py): one key, one run.
AUTH = MessageAuth(bytes(RUN_ID_SIZE), simulation_keys(0, 1)[0], {0: simulation_keys(0, 1)[0].public_key()})


def receive(data: bytes, base: MaskRecord):
    """A receiver's whole job: verify and decode against its history (holding ``base``), remember the result."""
    history = MaskHistory()
    history.remember(0, base)
    got = decode_masks(data, bases=history.lookup, auth=AUTH)
    history.remember(0, MaskRecord(got.round, got.masks, got.digest))
    return got


class DeltaRun:
    """What a finished delta-coded run's metrics say about its messages."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        config = read_config(run_dir)
        if config.algorithm.mask_codec != "delta":
            raise SystemExit(f"--delta-run {run_dir}: its mask_codec is {config.algorithm.mask_codec}, not delta")
        topology = build_topology_for(config)
        self.degree = {i: topology.degree(i) for i in range(config.agents)}
        self.full = build_model(config.model).layer_shapes()
        self.weights = sum(math.prod(s) for s in self.full)
        self.rows = [r for r in read_metrics(metrics_path(run_dir)) if self.degree[r["agent"]]]
        self.rounds = max(r["round"] for r in self.rows)
        self.packbits = {w: message_size(width_shapes(self.full, w)) for w in {r.get("width", 1.0) for r in self.rows}}
        self.fp32 = fp32_message_size(self.full)
        self.label = config.name

    def message_bytes(self, row: dict) -> float:
        return row["bytes_sent"] / self.degree[row["agent"]]

    def bits_per_weight(self, rows: list[dict]) -> float:
        """Mean over these messages of 8·bytes per weight of the lab's (full) model."""
        return 8 * sum(self.message_bytes(r) for r in rows) / (len(rows) * self.weights)

    def per_round(self) -> dict[int, float]:
        return {t: self.bits_per_weight([r for r in self.rows if r["round"] == t]) for t in range(1, self.rounds + 1)}

    def flip_rate(self) -> float:
        blocks = [(r["mask_flips"], width_shapes(self.full, r.get("width", 1.0))) for r in self.rows
                  if r.get("mask_flips") is not None and r["round"] > 1]
        return sum(sum(f) for f, _ in blocks) / sum(sum(math.prod(s) for s in b) for _, b in blocks)

    def summary(self) -> list[str]:
        rows, keyframes = self.rows, [r for r in self.rows if r["keyframe"]]
        total = sum(self.message_bytes(r) for r in rows)
        packed = sum(self.packbits[r.get("width", 1.0)] for r in rows)
        bits = self.bits_per_weight(rows)
        windows = [(lo, hi) for lo, hi in ((1, 10), (11, 50), (51, 200), (201, self.rounds)) if lo <= self.rounds]
        return [
            f"| `{self.run_dir}` | {self.rounds} | {len(rows):,} | {bits:.4f} | "
            + " | ".join(f"{self.bits_per_weight([r for r in rows if lo <= r['round'] <= hi]):.4f}"
                         for lo, hi in windows) + " | "
            f"{len(keyframes) / len(rows):.1%} / {sum(self.message_bytes(r) for r in keyframes) / total:.1%} | "
            f"{self.fp32 * len(rows) / total:,.0f}× | {packed / total:.1f}× |"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--delta-run", type=Path, nargs="*", default=[])
    parser.add_argument("--flip-rate", type=float, help="default: the first --delta-run's mean, else 0.003")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "codec.md")
    args = parser.parse_args(argv)
    paths = sorted((args.run_dir / "final" / "masks").glob("*.mcpl"))
    if not paths:
        raise SystemExit(f"{args.run_dir}: no final/masks/*.mcpl (is it a finished MCE-PL run?)")
    runs = [DeltaRun(d) for d in args.delta_run]
    flip_rate = args.flip_rate if args.flip_rate is not None else runs[0].flip_rate() if runs else 0.003
    rows: dict[str, dict[str, list[float]]] = {c: {"bytes": [], "enc": [], "dec": [], "sign": [], "verify": []}
                                               for c in MASK_CODECS}
    bound, weights, shapes = [], 0, None
    for seed, path in enumerate(paths):
        msg = decode_masks(path.read_bytes())
        masks = list(msg.masks)
        shapes = [m.shape for m in masks]
        weights = sum(m.size for m in masks)
        bound.append(entropy_bits(masks) / 8)
        base = MaskRecord.of(0, moved(masks, flip_rate, seed))
        for codec in MASK_CODECS:
            encode = functools.partial(encode_masks, masks, fingerprint=msg.fingerprint, sender=0, round=1,
                                       codec=codec, base=base, auth=AUTH)
            enc, data = timed(encode, args.repeats)

            dec, back = timed(functools.partial(receive, data, base), args.repeats)
            assert all(np.array_equal(a, b) for a, b in zip(masks, back.masks)), f"{codec} round trip failed"
            body, signature = data[:-SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]
            sign, _ = timed(functools.partial(AUTH.sign, body), args.repeats)
            verify, _ = timed(functools.partial(AUTH.verify, 0, body, signature), args.repeats)
            for name, value in (("bytes", len(data)), ("enc", enc), ("dec", dec), ("sign", sign), ("verify", verify)):
                rows[codec][name].append(value)
    fp32 = fp32_message_size(shapes)
    source = f" (the mean flip rate of `{runs[0].run_dir}`)" if runs and args.flip_rate is None else ""
    lines = [
        "# Mask codecs: bytes and time", "",
        "Generated by `benchmarks/mask_codec.py` — do not edit by hand.", "",
        "## One message", "",
        f"Masks: the final masks of the {len(paths)} agents of `{args.run_dir}` ({weights:,} masked weights each). "
        f"DSGD's fp32 message for the same model: {fp32:,} bytes. Entropy bound: Σ over layers of n·H(density), "
        f"mean {statistics.mean(bound):,.0f} bytes. The delta row codes each mask against a copy with "
        f"{flip_rate:.3%} of its bits swapped at random{source}; its decode time includes looking up the base in "
        "the receiver's history and remembering the result. Every message is signed as a lab's is (Ed25519, "
        "64 bytes: encode includes signing, decode includes verifying); the sign and verify columns time those "
        f"steps alone on the same messages, in the same run (target: sign + verify ≤ {SIGNING_TARGET_MS:g} ms).", "",
        "| codec | bytes per message (mean) | bits per weight | × entropy bound | fewer bytes than DSGD | "
        "encode ms (median) | decode ms (median) | encode + decode ms | sign ms | verify ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for codec, r in rows.items():
        size = statistics.mean(r["bytes"])
        enc, dec, sign, verify = (1000 * statistics.median(r[k]) for k in ("enc", "dec", "sign", "verify"))
        lines.append(f"| {codec} | {size:,.0f} | {8 * size / weights:.4f} | {size / statistics.mean(bound):.3f} | "
                     f"{fp32 / size:.2f}× | {enc:.2f} | {dec:.2f} | {enc + dec:.2f} | {sign:.3f} | {verify:.3f} |")
    decode_ms = {codec: 1000 * statistics.median(r["dec"]) for codec, r in rows.items()}
    per_round = ", ".join(f"{codec} {PAPER_DELIVERIES * ms / 1000:.2f} s" for codec, ms in decode_ms.items())
    lines += ["", f"A simulated paper-setting round decodes {PAPER_DELIVERIES} messages (the reference graph's "
              f"Σ degrees): {per_round} of decoding per round, next to ≈ 4.6 s of training (docs/performance.md)."]
    given = argv if argv is not None else sys.argv[1:]
    if runs:
        windows = [(lo, hi) for lo, hi in ((1, 10), (11, 50), (51, 200), (201, runs[0].rounds))
                   if lo <= runs[0].rounds]
        lines += ["", "## Whole runs with the delta codec", "",
                  "Every message the agents sent (`bytes_sent` ÷ degree per metrics row): envelope header, shape "
                  "records, base reference, per-layer kept counts, Rice streams and tag, keyframes included. Bits per "
                  "weight of the lab's model (a narrower agent's message covers its block only but is counted per "
                  f"weight of the full model, as DSGD's would be). Target: ≤ {TARGET_BITS} over a 400-round paper run.",
                  "",
                  "| run | rounds | messages | bits per weight, whole run | "
                  + " | ".join(f"rounds {lo}–{hi}" for lo, hi in windows)
                  + " | keyframes: messages / bytes | fewer bytes than DSGD | fewer bytes than packbits |",
                  "|---|---:|---:|---:|" + "---:|" * len(windows) + "---:|---:|---:|"]
        for run in runs:
            lines += run.summary()
        lines += ["", "![bits per weight per round](codec.png)"]
        fig, ax = plt.subplots(figsize=(7, 4))
        for run in runs:
            curve = run.per_round()
            ax.plot(list(curve), list(curve.values()), label=run.label, linewidth=0.8)
        ax.axhline(TARGET_BITS, color="grey", linestyle="--", label=f"target {TARGET_BITS}")
        ax.set_yscale("log")
        ax.set_xlabel("round")
        ax.set_ylabel("bits per weight (mean over messages)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"), dpi=110)
    lines += ["", f"Command: `python benchmarks/mask_codec.py {' '.join(str(g) for g in given)}`  ",
              f"Machine: {platform.machine()}, numpy {np.__version__}, Python {platform.python_version()}; "
              f"times are medians of {args.repeats} repeats per mask (compare codecs within this table only).", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
