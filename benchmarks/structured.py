"""Capability-sized subnetworks: what each ordered width buys — exported MACs, latency, training step, bytes.

For AlexNet-CIFAR at every bundled profile's width (its structure policy) and at the widths whose
exported MAC fraction is nearest 0.5, 0.25 and 0.1, in one run:

1. **export** a stand-in of the structure — the seeded fixed weights, the width's block, inside it
   a random mask at the lab's retention (0.3 conv / 0.9 linear) — with the exporter's own pruning
   and ONNX code, and time onnxruntime at batch 1, 1 thread, every model interleaved with the
   full-width one (:func:`edge_mcepl.runtime.compare_latency`);
2. time MCE-PL's **local training step** (batch 128) at each width, interleaved, next to the
   full-width MCE-PL step and a plain dense step of stock PyTorch layers;
3. count the **bytes of one mask message** (packbits and Rice) at each width;
4. if the paper-setting runs exist (``--results``), the mean personalized accuracy per profile of
   ordered width, learned filter selection, the HeteroFL-style baseline and unstructured MCE-PL.

Ratios are taken within this run (timings here drift by tens of percent between runs). Writes
``docs/structured.md``.

Usage:  python benchmarks/structured.py [--seconds 2] [--steps 12] [--results results/reproduce-full]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.reproduction.experiments import PROFILE_MIX, UNSTRUCTURED_MIX  # noqa: E402
from benchmarks.round_time import dense_step_seconds  # noqa: E402
from edge_mcepl import runtime  # noqa: E402
from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams  # noqa: E402
from edge_mcepl.algorithms.params import Retention  # noqa: E402
from edge_mcepl.export.cost import ALIGN, exported_cost  # noqa: E402
from edge_mcepl.export.graph import trace_ops  # noqa: E402
from edge_mcepl.export.onnx_export import save_model, to_onnx  # noqa: E402
from edge_mcepl.export.prune import prune_network  # noqa: E402
from edge_mcepl.metrics import read_metrics  # noqa: E402
from edge_mcepl.nn.masking import topk_mask  # noqa: E402
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights  # noqa: E402
from edge_mcepl.nn.width import pad_to_full, width_shapes  # noqa: E402
from edge_mcepl.nn.zoo import build_model  # noqa: E402
from edge_mcepl.profiles import WIDTHS, load_profile, measure_gflops, policy_structure  # noqa: E402
from edge_mcepl.wire.masks import encode_masks  # noqa: E402

MODEL, SEED, RETENTION = "alexnet-cifar", 1234, Retention(0.3, 0.9)
MAC_TARGETS = (0.5, 0.25, 0.1)
FINDINGS = """\
## What was tried, what is the default, and why it falls short

- **Two structured modes, same seeds, data and widths**: ordered width (the leading filters,
  nested) and learned filter selection (the filters with the most votes, `learned_filters`). They
  reach the same accuracy within a point; ordered width is the default — `retention_ratio: auto`
  gives a width, and every rule with structure trains it — because only it also shrinks training
  (the step tracks the MAC fraction, table above) and the message (the block's shapes say which
  filters are held), while learned selection trains and sends the full network. The `structured`
  preset's absolute filter-drop threshold and group lasso were measured before (docs/export.md):
  they remove conv1 filters only.
- **Accuracy falls short of unstructured MCE-PL** by about 8 points at round 200. A narrow device
  keeps width² × r of the conv weights (rpi4: 0.25 × 0.3 = 7.5 % instead of 30 %), and even the
  full-width agents lose points: their narrow neighbours vote on part of their network only. The
  what-if row keeps 0.5 of the weights inside the kept filters (free in exported MACs): +1.8 points
  — read on test data, so it changes no default; choosing the inside retention (and the preset) on a
  validation split is the next issue's work (make collaboration pay). The runs are 200 rounds (CPU
  budget), not the paper's 400; the unstructured row is read at the same round.
- **The HeteroFL-style baseline is more accurate** at the same widths and MACs (dense fp32 weights
  train faster than masks over fixed weights), for 32× the bytes.
- **onnxruntime speed-up falls short of 0.8 × the MAC reduction**, more so at small widths: the
  element-wise work MACs do not count (ELU, LRN's steps, pooling, layout reorders; the op shares
  above) shrinks only linearly with the width, so it is a growing share of a narrow model's time,
  and onnxruntime spends a near-constant ≈ 0.12 ms per run outside its kernels (the table above).
  Tried: the exporter's LRN now folds α/n into the window matrix and computes d^(−3/4) as two
  square roots and a division (seven nodes instead of nine) — 2–4 % faster at every width in one
  interleaved run of the old and new graphs (a one-off script, not kept), so the ratios did not
  move; onnxruntime's `ORT_ENABLE_EXTENDED` level (no NCHWc layout, fewer reorders) was faster at
  some widths and slower at others in the same run, so the runtime keeps `ORT_ENABLE_ALL`. What is
  left is the architecture's own element-wise work at batch 1.
- **The five-profile mix averages 0.59× the MACs** of unstructured MCE-PL (which exports every
  filter), not ≤ 0.5×: the laptop and the GPU workstation are allowed (nearly) the whole network by
  their budgets, and the policy does not take more from a device than its budget requires."""
SPEEDUP_TARGET = 0.8  # issue: onnxruntime speed-up ≥ 0.8 × the MAC reduction at batch 1, 1 thread
STEP_TARGET = 0.5  # issue: the rpi4 structure's training step ≤ 0.5 × the full dense step
RUNS = {"ordered width": "structured-ordered", "learned filters": "structured-learned",
        "HeteroFL-style fp32": "heterofl-profiles",
        "ordered width, conv retention 0.5 inside (what-if)": "structured-ordered-r05"}
UNSTRUCTURED = ("unstructured (archived hetero-profiles)", ROOT / "results" / "reproduce-full" / "hetero-profiles")


def nearest_width(fraction: float) -> float:
    return min(WIDTHS, key=lambda w: abs(exported_cost(MODEL, w).mac_fraction - fraction))


def stand_in_masks(model, width: float) -> list[np.ndarray]:
    """The width's block with a random mask at the lab's retention inside, padded to the full shapes."""
    gen = torch.Generator().manual_seed(SEED)
    blocks = []
    for (_, layer), shape in zip(model.masked_layers(), width_shapes(model.layer_shapes(), width)):
        blocks.append(topk_mask(torch.rand(shape, generator=gen), RETENTION.for_layer(layer)).numpy())
    return blocks


def ort_profile(path: Path, runs: int = 300) -> dict:
    """onnxruntime's profiler at batch 1, 1 thread: the share of kernel time per op type, and a run's time
    inside kernels vs in all (the rest is the runtime's per-node overhead, which does not shrink with width)."""
    options = runtime.ort.SessionOptions()
    options.intra_op_num_threads, options.enable_profiling = 1, True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = runtime.ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)}
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] = by_op.get(e["args"]["op_name"], 0.0) + e["dur"]
    total = sum(by_op.values())
    run_us = [e["dur"] for e in events if e.get("name") == "model_run"]
    return {"ops": {op: t / total for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "run_us": statistics.median(run_us), "kernel_us": total / len(run_us)}


def export_latency(widths: list[float], seconds: float, work: Path) -> dict[float, dict]:
    model = build_model(MODEL)
    fixed = generate_fixed_weights(model, MODEL, SEED)
    weights = {name: t.numpy() for name, t in fixed.tensors.items()}
    ops = trace_ops(model, MODEL)
    sessions, costs = {}, {}
    for w in widths:
        blocks = stand_in_masks(model, w)
        masks = {name: m for (name, _), m in zip(model.masked_layers(), pad_to_full(blocks, model.layer_shapes()))}
        net = prune_network(ops, weights, masks, input_shape=model.input_shape, num_classes=10, elu_logits=True,
                            align=ALIGN)
        path = work / f"width-{w:g}.onnx"
        save_model(to_onnx(net), path)
        sessions[w] = runtime.open_session(path, threads=1)
        costs[w] = {"macs": net.macs, "dense_macs": net.dense_macs, "params": net.params, "bytes": path.stat().st_size,
                    **ort_profile(path)}
    latency = runtime.compare_latency({str(w): s for w, s in sessions.items()}, 1, seconds=seconds)
    for w in widths:
        costs[w]["p50_ms"] = latency[str(w)].p50_ms
    return costs


def step_times(widths: list[float], steps: int, threads: int) -> dict[float, float]:
    """Median MCE-PL local step per width, widths interleaved so they share the machine's drift."""
    torch.set_num_threads(threads)
    template = build_model(MODEL)
    fixed = generate_fixed_weights(template, MODEL, SEED)
    rules = {}
    for w in widths:
        model = build_model(MODEL)
        load_fixed_weights(model, fixed)
        rules[w] = MCEPL(model, MCEPLParams(), Retention(0.3, 0.9, width=w), seed=SEED)
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(128, 3, 32, 32, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    times: dict[float, list[float]] = {w: [] for w in widths}
    for rep in range(steps + 2):
        for w, rule in rules.items():
            start = time.perf_counter()
            rule.local_step(images, labels)
            rule.masks()  # the mask a round sends: part of every round's cost
            if rep >= 2:
                times[w].append(time.perf_counter() - start)
    return {w: statistics.median(t) for w, t in times.items()}


def message_bytes(width: float) -> tuple[int, int]:
    model = build_model(MODEL)
    masks = [m.astype(bool) for m in stand_in_masks(model, width)]
    return tuple(len(encode_masks(masks, fingerprint=bytes(16), sender=0, round=0, codec=codec))  # type: ignore[return-value]
                 for codec in ("packbits", "rice"))


def metrics_file(run_dir: Path) -> Path | None:
    """A run's metrics, live or archived (gzipped under results/)."""
    return next((p for p in (run_dir / "metrics.jsonl", run_dir / "metrics.jsonl.gz") if p.is_file()), None)


def accuracy_by_profile(run_dir: Path) -> tuple[int, list[float]] | None:
    """(last evaluated round, mean accuracy per profile of the mix, agents round-robin) of a run."""
    path = metrics_file(run_dir)
    if path is None:
        return None
    rows = [r for r in read_metrics(path) if "accuracy" in r]
    if not rows:
        return None
    last = max(r["round"] for r in rows)
    return last, _by_profile([r for r in rows if r["round"] == last])


def accuracy_at(run_dir: Path, round_: int) -> tuple[list[float], float] | None:
    """(accuracy per profile at ``round_``, mean bytes an agent sent per round up to it) of a run."""
    path = metrics_file(run_dir)
    rows = [r for r in read_metrics(path) if r.get("round", 0) <= round_] if path is not None else []
    last = [r for r in rows if r["round"] == round_ and "accuracy" in r]
    if not last:
        return None
    return _by_profile(last), statistics.mean(r["bytes_sent"] for r in rows)


def _by_profile(rows: list[dict]) -> list[float]:
    out = []
    for p in range(len(PROFILE_MIX)):
        accs = [r["accuracy"] for r in rows if r["agent"] % len(PROFILE_MIX) == p]
        out.append(sum(accs) / len(accs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="onnxruntime timing per model set")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per width")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the training step")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "reproduce-full")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "structured.md")
    args = parser.parse_args()

    profiles = {name: load_profile(name) for name in PROFILE_MIX}
    decisions = {name: policy_structure(p, MODEL) for name, p in profiles.items()}
    targets = {f: nearest_width(f) for f in MAC_TARGETS}
    widths = sorted({1.0, *targets.values(), *(d.width for d in decisions.values())}, reverse=True)
    print(f"widths: {widths}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        costs = export_latency(widths, args.seconds, Path(tmp))
    steps = step_times(widths, args.steps, args.threads)
    torch.set_num_threads(args.threads)
    dense_step = dense_step_seconds(lrn=True, steps=args.steps)
    gflops_here = measure_gflops(1.0, threads=1)
    sizes = {w: message_bytes(w) for w in widths}
    full = costs[1.0]

    lines = ["# Capability-sized subnetworks: ordered width", "",
             "Generated by `benchmarks/structured.py` — do not edit by hand. What the structure is and why: "
             "[algorithm.md#width](algorithm.md#width); the policy: `edge_mcepl/profiles.py`.", "",
             f"Command: `python benchmarks/structured.py --seconds {args.seconds:g} --steps {args.steps} "
             f"--threads {args.threads}`  ",
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, onnxruntime "
             f"{runtime.ort.__version__}; this machine's 1-thread matmul: {gflops_here:.1f} GFLOP/s.  ",
             f"Model: {MODEL}; stand-in masks (seeded fixed weights, the width's block, a random mask at 0.3 conv / "
             "0.9 linear inside); exported with the exporter's code (`--align 8`, LRN window sums counted).", "",
             "## Per width (same run)", "",
             "| width | exported MACs | MAC fraction | params | ORT p50, batch 1, 1 thread | speed-up | speed-up ÷ MAC "
             "reduction | train step | step ÷ full-width step | step ÷ plain dense step | message (packbits / Rice) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w in widths:
        c = costs[w]
        speedup = full["p50_ms"] / c["p50_ms"]
        reduction = full["macs"] / c["macs"]
        lines.append(f"| {w:g} | {c['macs']:,} | {c['macs'] / full['macs']:.3f} | {c['params']:,} | "
                     f"{c['p50_ms']:.3f} ms | {speedup:.2f}× | {speedup / reduction:.2f} | {steps[w] * 1e3:.0f} ms | "
                     f"{steps[w] / steps[1.0]:.2f} | {steps[w] / dense_step:.2f} | "
                     f"{sizes[w][0]:,} / {sizes[w][1]:,} B |")
    lines += ["", f"Plain dense step (stock `nn.Conv2d` + `F.local_response_norm`, batch 128, {args.threads} threads): "
              f"{dense_step * 1e3:.0f} ms. Train step = MCE-PL `local_step` + the mask it sends, batch 128, "
              f"{args.threads} threads, median of {args.steps}, widths interleaved.", ""]
    checks = []
    for f, w in targets.items():
        c = costs[w]
        ratio = (full["p50_ms"] / c["p50_ms"]) / (full["macs"] / c["macs"])
        verdict = "met" if ratio >= SPEEDUP_TARGET else "missed"
        checks.append(f"- MAC fraction ≈ {f:g} (width {w:g}, {c['macs'] / full['macs']:.3f}): speed-up ÷ MAC "
                      f"reduction = {ratio:.2f} — target ≥ {SPEEDUP_TARGET}: **{verdict}**")
    rpi4 = decisions["rpi4"].width
    step_ratio = steps[rpi4] / dense_step
    checks.append(f"- rpi4 structure (width {rpi4:g}) training step ÷ plain dense step = {step_ratio:.2f} "
                  f"(÷ full-width MCE-PL step: {steps[rpi4] / steps[1.0]:.2f}) — target ≤ {STEP_TARGET}: "
                  f"**{'met' if step_ratio <= STEP_TARGET else 'missed'}**")
    lines += ["## Targets", "", *checks, ""]
    shares = ", ".join(f"{op} {share:.0%}" for op, share in costs[rpi4]["ops"].items() if share >= 0.01)
    lines += [f"Where onnxruntime's time goes at width {rpi4:g} (its profiler, kernel time, batch 1, 1 thread): "
              f"{shares}. Only Conv and Gemm scale with width²; ELU, LRN's element-wise steps (Mul, Sqrt, "
              "Div, Add), pooling and layout reorders scale with the activations, i.e. with width.", "",
              "Why the narrow widths miss: a run's time in onnxruntime's profiler, inside the kernels and in all. The "
              "time outside kernels (the runtime's per-node overhead) is a near-constant that does not shrink with "
              "width, and even the kernels alone fall short of the MAC reduction, because the element-wise kernels "
              "shrink with width, not width² — both together bound the speed-up of a narrow AlexNet at batch 1:", "",
              "| width | MAC fraction | run (profiler) | in kernels | outside kernels "
              "| kernel speed-up ÷ MAC reduction |",
              "|---:|---:|---:|---:|---:|---:|"]
    for w in sorted({1.0, *targets.values()}, reverse=True):
        c = costs[w]
        kernel_ratio = (full["kernel_us"] / c["kernel_us"]) / (full["macs"] / c["macs"])
        lines.append(f"| {w:g} | {c['macs'] / full['macs']:.3f} | {c['run_us']:.0f} µs | {c['kernel_us']:.0f} µs | "
                     f"{c['run_us'] - c['kernel_us']:.0f} µs | {kernel_ratio:.2f} |")
    lines.append("")

    lines += ["## Per profile", "",
              "Projected latency on the device = ORT p50 here (1 thread) × this machine's 1-thread GFLOP/s ÷ the "
              "profile's GFLOP/s (all cores) — a projection that assumes batch-1 inference uses the device's cores "
              "as well as its matmul benchmark does; only a measurement on the device settles it.", "",
              "| profile | width | budget MACs | exported MACs | params ≤ budget | ORT p50 here | projected on device "
              "(budget) | train step ÷ dense | message packbits / Rice |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, d in decisions.items():
        c, p = costs[d.width], profiles[name]
        projected = c["p50_ms"] * gflops_here / p.gflops
        lines.append(f"| {name} | {d.width:g} | {d.budget_macs:,} | {d.exported_macs:,} | "
                     f"{d.exported_params:,} ≤ {d.budget_params:,} | {c['p50_ms']:.3f} ms | {projected:.3f} ms "
                     f"({p.inference_latency_ms:g} ms) | {steps[d.width] / dense_step:.2f} | "
                     f"{sizes[d.width][0]:,} / {sizes[d.width][1]:,} B |")
    mean_fraction = statistics.mean(costs[d.width]["macs"] / full["macs"] for d in decisions.values())
    lines += ["", f"Mean exported MAC fraction of the five-profile mix: **{mean_fraction:.3f}** of unstructured "
              "MCE-PL's (which exports every filter at any retention: 1.000).", ""]
    lines += accuracy_section(args.results, mean_fraction)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


def accuracy_section(results: Path, mean_fraction: float) -> list[str]:
    """Mean personalized accuracy per profile of the paper-setting runs, at the ordered run's last round."""
    ordered = accuracy_by_profile(results / RUNS["ordered width"])
    if ordered is None:
        return ["## Accuracy", "", f"No paper-setting runs under `{results}` yet "
                "(`python benchmarks/reproduce.py --full --only structured-ordered,structured-learned,"
                "heterofl-profiles`).", ""]
    last, _ = ordered
    head = " | ".join(PROFILE_MIX)
    lines = ["## Accuracy (paper setting, 20 agents, reference graph, 4-class shards)", "",
             f"Mean personalized test accuracy at round {last}, per profile (4 agents each, round-robin) and over "
             f"all 20; the unstructured runs use the conv retention the earlier policy gave "
             f"({' / '.join(f'{r:g}' for _, r in UNSTRUCTURED_MIX)}), read at the same round from the archived "
             "400-round run. Raw runs: `" + str(results.relative_to(ROOT) if results.is_relative_to(ROOT) else results)
             + "/`.", "", f"| method | {head} | mean | kB sent per agent per round |",
             "|---|" + "---:|" * (len(PROFILE_MIX) + 2)]
    measured: dict[str, tuple[float, float]] = {}  # label → (mean accuracy, bytes per agent per round)
    for label, run in [*((k, results / v) for k, v in RUNS.items()), UNSTRUCTURED]:
        got = accuracy_at(run, last)
        if got is not None:
            accs, sent = got
            measured[label] = (statistics.mean(accs), sent)
            lines.append(f"| {label} | " + " | ".join(f"{a:.4f}" for a in accs)
                         + f" | {statistics.mean(accs):.4f} | {sent / 1e3:,.1f} |")
    lines += ["", *verdicts(measured, mean_fraction, last), "", FINDINGS, ""]
    return lines


def verdicts(measured: dict[str, tuple[float, float]], mean_fraction: float, round_: int) -> list[str]:
    """The issue's accuracy targets, checked on the table above (points = 100 × accuracy difference)."""
    ordered, unstructured = measured.get("ordered width"), measured.get(UNSTRUCTURED[0])
    out = ["## Targets (accuracy)", ""]
    if ordered and unstructured:
        gap = 100 * (ordered[0] - unstructured[0])
        out.append(f"- Ordered width vs unstructured MCE-PL, same profile mix, round {round_}: {gap:+.2f} points at "
                   f"{mean_fraction:.3f}× its mean exported MACs — target within 2 points at ≤ 0.5×: "
                   f"**{'met' if gap >= -2 and mean_fraction <= 0.5 else 'missed'}**"
                   + ("" if mean_fraction <= 0.5 else " (the profiles' budgets give a mix at "
                      f"{mean_fraction:.2f}×, above 0.5× before any accuracy is counted)"))
    learned = measured.get("learned filters")
    if ordered and learned:
        out.append(f"- Learned filter selection vs ordered width: {100 * (learned[0] - ordered[0]):+.2f} points, "
                   f"for {learned[1] / ordered[1]:.2f}× the bytes and the full network's training cost.")
    hetero = measured.get("HeteroFL-style fp32")
    if ordered and hetero:
        out.append(f"- Ordered width vs the HeteroFL-style baseline (same widths, same MACs): "
                   f"{100 * (ordered[0] - hetero[0]):+.2f} points with {hetero[1] / ordered[1]:.1f}× fewer bytes — "
                   f"target ≥ its accuracy with ≥ 20× fewer bytes: "
                   f"**{'met' if ordered[0] >= hetero[0] and hetero[1] / ordered[1] >= 20 else 'missed'}**")
    return out


if __name__ == "__main__":
    main()
