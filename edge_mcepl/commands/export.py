"""``edge-mcepl export``: each agent's filter-pruned subnetwork as a smaller, verified ONNX model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from .paths import existing_folder, writable_folder

DEFAULT_ROOT = Path("export")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export agents' pruned subnetworks to ONNX (+ manifest.json)",
                       description="Regenerate the fixed weights from the run's seed, apply each agent's final mask, "
                                   "physically remove dead filters/rows and write a verified ONNX model per agent.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (edge-mcepl simulate --out)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--agent", type=int, action="append", metavar="N", help="agent to export (repeatable)")
    which.add_argument("--all", action="store_true", help="every agent of the run (the default)")
    p.add_argument("--out", help="output folder (default export/RUN_NAME); one agent_NNN/ folder per agent")
    p.add_argument("--quantize", choices=["int8"], help="also write model.int8.onnx (onnxruntime static quantization)")
    p.add_argument("--data-dir", help="where the run's dataset is, for the accuracy in the manifest")
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads (default 1)")
    p.add_argument("--no-dense", action="store_true", help="do not write dense.onnx (the unpruned comparator)")
    p.add_argument("--align", type=int, default=8, metavar="N",
                   help="prune a layer only if that saves a whole block of N filters (default 8: onnxruntime's "
                        "CPU convolutions run in blocks of 8 channels; 1 = remove every dead filter)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.pipeline import Exporter, agent_dir_name

    if args.threads < 1:
        raise UserError(f"--threads must be ≥ 1, got {args.threads}")
    if args.align < 1:
        raise UserError(f"--align must be ≥ 1, got {args.align}")
    run_dir = Path(args.run_dir)
    data_dir = args.data_dir and str(existing_folder("--data-dir", args.data_dir).resolve())
    out_root = writable_folder("--out", args.out if args.out else DEFAULT_ROOT / run_dir.resolve().name)
    exporter = Exporter(run_dir, data_dir=data_dir, threads=args.threads, align=args.align)
    agents = args.agent if args.agent else exporter.run.agent_ids
    for agent_id in agents:
        exporter.run.agent(agent_id)  # unknown ids fail before anything is written
    print(f"edge-mcepl export: {run_dir} ({exporter.run.model_name}, weights fingerprint "
          f"{exporter.run.fingerprint.hex()} verified) → {out_root}/")
    failures = []
    for agent_id in agents:
        try:
            m = exporter.export_agent(agent_id, out_root, write_dense=not args.no_dense, quantize=args.quantize)
        except UserError as exc:
            if len(agents) == 1:
                raise
            failures.append(str(exc))
            print(f"  NOT exported: {exc}", file=sys.stderr)
            continue
        print(_summary_line(m))
        if "why_none_removed" in m["filters"]:
            print(f"             no filter removed (as large as dense.onnx): {m['filters']['why_none_removed']}")
        print(f"             → {out_root / agent_dir_name(agent_id)}/")
    if failures:
        raise UserError(f"{len(failures)} of {len(agents)} agents could not be exported; first: {failures[0]}")
    return 0


def _points(change: float) -> str:
    """An accuracy change in percentage points with a true minus sign: "−0.27", never a "-0.0027" accuracy."""
    return f"{100 * change:+.2f}".replace("-", "\u2212")


def _summary_line(m: dict) -> str:
    acc = m["accuracy"]
    if "pruned_onnx" in acc:
        where = " on synthetic data (the run's dataset)" if m["preprocessing"]["dataset"] == "synthetic" else ""
        acc_text = f"accuracy {acc['pruned_onnx']:.4f}{where}"
    else:
        acc_text = f"accuracy skipped ({acc['skipped']})"
    kept = " ".join(f"{r['filters_kept']}/{r['filters']}" for r in m["layers"])
    line = (f"  agent {m['agent']:3d}: filters {kept}  params {m['params']['ratio']:.3f}×  "
            f"MACs {m['macs']['ratio']:.3f}×  "
            f"{m['files']['model']['bytes'] / 1e3:.0f} kB (dense {m['files']['dense']['bytes'] / 1e3:.0f} kB)  "
            f"max |Δ| {m['verification']['pruned']['max_abs_diff']:.1e}  {acc_text}")
    if m.get("quantization"):
        q = m["quantization"]
        line += f"  int8 {m['files']['int8']['bytes'] / 1e3:.0f} kB"
        if "accuracy" in q:
            line += f", accuracy {q['accuracy']['int8']:.4f} ({_points(q['accuracy']['change'])} points vs fp32)"
    return line
