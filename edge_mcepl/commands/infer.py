"""``edge-mcepl infer`` and ``edge-mcepl bench-infer``: run an exported model with onnxruntime only.

This module and everything it imports must stay torch-free (a device may have only onnxruntime
and numpy): the runtime is imported inside the command functions, and it imports no torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write
from ..errors import UserError
from .paths import writable_file

if TYPE_CHECKING:
    import numpy as np

    from ..runtime import ModelInfo


def register(sub: argparse._SubParsersAction) -> None:
    infer = sub.add_parser("infer", help="predict with an exported ONNX model (onnxruntime + numpy only)")
    infer.add_argument("model", metavar="MODEL.onnx")
    infer.add_argument("inputs", metavar="INPUT", nargs="+",
                       help="one .npy batch: float32 N×C×H×W normalised like the training data, or raw uint8 with "
                            "--raw-uint8; or image files and folders of them (PNG, JPEG; a folder in sorted name "
                            "order), preprocessed as the manifest says")
    infer.add_argument("--raw-uint8", action="store_true",
                       help="the .npy batch holds raw uint8 images (N×C×H×W or N×H×W×C): apply the manifest's "
                            "preprocessing (image files always get it)")
    infer.add_argument("--manifest", help="manifest.json with the preprocessing (default: the one beside MODEL)")
    infer.add_argument("--out", help="save the predicted classes (.npy, int64) to this file")
    infer.add_argument("--logits-out", help="save the logits (.npy, float32 N×classes) to this file")
    infer.add_argument("--labels", help="labels .npy (N integers, in input order): also print the accuracy")
    infer.add_argument("--threads", type=int, default=1)
    infer.add_argument("--batch-size", type=int, default=256)
    infer.set_defaults(func=run_infer)

    bench = sub.add_parser("bench-infer", help="p50/p90 latency of an exported model vs its dense export")
    bench.add_argument("model", metavar="MODEL.onnx")
    bench.add_argument("--dense", help="dense model to compare with (default: dense.onnx beside MODEL, if present)")
    bench.add_argument("--threads", type=int, action="append", help="intra-op threads (repeatable; default 1)")
    bench.add_argument("--batch", type=int, action="append", help="batch sizes (repeatable; default 1 and 64)")
    bench.add_argument("--seconds", type=float, default=2.0, help="time budget per (batch, threads) cell")
    bench.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    bench.set_defaults(func=run_bench)


def _save(path: str, array) -> None:
    import numpy as np

    try:
        np.save(path, array, allow_pickle=False)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None


def _is_batch(inputs: list[str]) -> bool:
    """Whether INPUT is one ``.npy`` batch (else image files/folders); a batch cannot be mixed with images."""
    batches = [item for item in inputs if item.lower().endswith(".npy")]
    if batches and len(inputs) > 1:
        raise UserError(f"{batches[0]}: a .npy batch is given alone, not with other inputs")
    return bool(batches)


def _read_inputs(args: argparse.Namespace, info: ModelInfo, batch: bool) -> tuple[np.ndarray, list[str] | None]:
    """(float32 model inputs, the file name of each, or None for a .npy batch)."""
    from .. import runtime

    if batch:
        preprocessing = runtime.load_preprocessing(args.model, args.manifest) if args.raw_uint8 else None
        return runtime.load_inputs(args.inputs[0], info, preprocessing), None
    files = runtime.image_files(args.inputs)
    preprocessing = runtime.load_preprocessing(args.model, args.manifest)
    return runtime.load_images(files, preprocessing, info), [str(f) for f in files]


def _print_predictions(pred: np.ndarray, names: list[str] | None, out: str | None) -> None:
    """Image files: every file with its class. A batch: its rows, only the first 10 when long and saved to ``out``."""
    if names is not None:
        for name, p in zip(names, pred):
            print(f"{name}\t{int(p)}")
        return
    shown = len(pred) if len(pred) <= 20 or not out else 10
    for i in range(shown):
        print(f"{i}\t{int(pred[i])}")
    if shown < len(pred):
        print(f"… {len(pred) - shown} more in {out}")


def run_infer(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import runtime

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    batch = _is_batch(args.inputs)
    if args.manifest and batch and not args.raw_uint8:
        raise UserError("--manifest is only read with --raw-uint8 or image inputs")
    for option, path in (("--out", args.out), ("--logits-out", args.logits_out)):
        if path:
            writable_file(option, path)
    session = runtime.open_session(args.model, args.threads)
    info = runtime.model_info(session)
    x, names = _read_inputs(args, info, batch)
    labels = runtime.load_labels(args.labels, len(x), info.num_classes) if args.labels else None
    pred, logits = runtime.predict(session, x, args.batch_size)
    if args.out:
        _save(args.out, pred.astype(np.int64))
    if args.logits_out:
        _save(args.logits_out, logits.astype(np.float32))
    _print_predictions(pred, names, args.out)
    counts = np.bincount(pred, minlength=logits.shape[1])
    print(f"{len(pred)} inputs; predicted class counts: " + " ".join(f"{c}:{n}" for c, n in enumerate(counts) if n))
    if labels is not None:
        print(f"accuracy {float((pred == labels).mean()):.4f} on {len(pred)} inputs")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from .. import runtime

    threads = args.threads or [1]
    batches = args.batch or [1, 64]
    if min(threads) < 1 or min(batches) < 1:
        raise UserError("--threads and --batch must be ≥ 1")
    dense = Path(args.dense) if args.dense else runtime.sibling_dense(args.model)
    if args.dense and not Path(args.dense).is_file():
        raise UserError(f"--dense {args.dense}: file not found")
    if args.json_out:
        writable_file("--json", args.json_out)
    print(f"bench-infer {args.model}"
          + (f" vs dense {dense}" if dense else " (no dense model beside it; pass --dense)"))
    rows = []
    print(f"{'threads':>7} {'batch':>5} {'model p50 ms':>12} {'p90 ms':>8}" +
          (f" {'dense p50 ms':>12} {'p90 ms':>8} {'speedup':>8}" if dense else ""))
    for t in threads:
        sessions = {"model": runtime.open_session(args.model, t)}
        if dense:
            sessions["dense"] = runtime.open_session(dense, t)
        for b in batches:
            lat = runtime.compare_latency(sessions, b, seconds=args.seconds)
            row = {"threads": t, "batch": b, "model": lat["model"].to_dict()}
            line = f"{t:>7} {b:>5} {lat['model'].p50_ms:>12.3f} {lat['model'].p90_ms:>8.3f}"
            if dense:
                row["dense"] = lat["dense"].to_dict()
                row["speedup_p50"] = round(lat["dense"].p50_ms / lat["model"].p50_ms, 3)
                line += f" {lat['dense'].p50_ms:>12.3f} {lat['dense'].p90_ms:>8.3f} {row['speedup_p50']:>7.2f}×"
            rows.append(row)
            print(line)
    if args.json_out:
        atomic_write(args.json_out, json.dumps({"model": str(args.model), "dense": str(dense) if dense else None,
                                                "results": rows}, indent=2) + "\n")
    return 0
