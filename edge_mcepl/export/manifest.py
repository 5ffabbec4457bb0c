"""``manifest.json``: what was exported, how much smaller it is, and how it was checked."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from .. import __version__
from ..atomic import atomic_write
from ..config import DataConfig
from ..data import preprocessing
from ..run_dir import AgentEntry
from .prune import LayerReport, LRNReport, PrunedNetwork

FORMAT = "edge-mcepl-export/1"
_PACKAGES = ("torch", "numpy", "onnx", "onnxruntime")


def library_versions() -> dict[str, str]:
    versions = {"edge-mcepl": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


PARAMS_COUNTED = ("numbers in the graph's weight tensors: conv and linear weights, linear biases and each LRN's "
                  "C×C window matrix (scalar constants of the LRN formula not counted); dense = the same graph with "
                  "nothing removed (dense.onnx)")
MACS_COUNTED = ("multiply-accumulates per image of every Conv and Gemm node of the graph: the masked conv layers, "
                "each LRN's window sum (a C×C 1×1 convolution, zeros of the window matrix included, as computed) and "
                "the linear layers; element-wise ops (LRN squares, scaling, square roots and products; ELU; max "
                "pooling; bias adds) not counted; dense = the same graph with nothing removed (dense.onnx)")


def _macs(reports: Iterable[LayerReport | LRNReport]) -> dict:
    reports = list(reports)
    return {"dense": sum(r.macs for r in reports), "pruned": sum(r.macs_kept for r in reports)}


def size_summary(pruned: PrunedNetwork) -> dict:
    """Parameters and compute, dense vs pruned, of everything in the exported graph that holds weights."""
    by_kind = {"conv": _macs(r for r in pruned.layers if r.kind == "conv"), "lrn_window": _macs(pruned.lrns),
               "linear": _macs(r for r in pruned.layers if r.kind == "linear")}
    return {
        "params": {"dense": pruned.dense_params, "pruned": pruned.params,
                   "ratio": _ratio(pruned.params, pruned.dense_params), "counted": PARAMS_COUNTED},
        "macs": {"dense": pruned.dense_macs, "pruned": pruned.macs, "ratio": _ratio(pruned.macs, pruned.dense_macs),
                 "by_kind": by_kind, "counted": MACS_COUNTED},
        "flops": {"dense": 2 * pruned.dense_macs, "pruned": 2 * pruned.macs,
                  "ratio": _ratio(pruned.macs, pruned.dense_macs),
                  "note": "2 × the multiply-accumulates counted in macs, per image"},
        "filters": {"dense": sum(r.filters for r in pruned.layers),
                    "kept": sum(r.filters_kept for r in pruned.layers), "removed": pruned.filters_removed},
    }


def preprocessing_entry(data: DataConfig, input_shape: tuple[int, ...]) -> dict:
    """How raw images become the model's input, for the dataset the run's config (``data``) names.

    A config that allowed the synthetic fallback may have trained on synthetic data instead, and
    the run directory does not record which (only the run's console output does): the manifest
    says so rather than guess.
    """
    entry = preprocessing.manifest_entry(data.dataset, input_shape)
    if data.fallback_to_synthetic and data.dataset != "synthetic":
        entry["caveat"] = (f"the run's config allowed falling back to synthetic data when {data.dataset} was not "
                           "found; the run's console output (its 'data: …' line) says which it trained on. After a "
                           "fallback these steps do not apply: the inputs were float32 synthetic images")
    return entry


def build_manifest(*, agent: AgentEntry, run, pruned: PrunedNetwork, files: dict, verification: dict,
                   accuracy: dict, quantization: dict | None, align: int = 1,
                   why_none_removed: str | None = None) -> dict:
    """The manifest; ``why_none_removed`` (when no filter was removed) is kept under ``filters``."""
    sizes = size_summary(pruned)
    if why_none_removed is not None:
        sizes["filters"]["why_none_removed"] = why_none_removed
    mask_ones = sum(r.mask_ones for r in pruned.layers)
    masked = sum(r.params - (r.filters if r.kind == "linear" else 0) for r in pruned.layers)
    return {
        "format": FORMAT,
        "agent": agent.id,
        "profile": agent.profile,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": {"dir": str(run.run_dir), "name": run.config.name, "rounds": run.state.rounds,
                "preset": run.config.algorithm.preset, "group_lasso": run.config.algorithm.group_lasso,
                "min_kept_per_filter": run.config.algorithm.min_kept_per_filter,
                "mask_file": agent.mask_file, "classes": agent.classes},
        "model": {"name": run.model_name, "num_classes": run.num_classes, "input_shape": list(pruned.input_shape),
                  "elu_logits": pruned.elu_logits, "weights_seed": run.weights_seed, "weights": run.state.weights,
                  "weights_fingerprint": run.fingerprint.hex(), "input": "input", "output": "logits",
                  "opset": 17},
        "retention": {"conv": agent.retention_conv, "linear": agent.retention_linear, "width": agent.width,
                      "mask_density": _ratio(mask_ones, masked)},
        "preprocessing": preprocessing_entry(run.config.data, pruned.input_shape),
        **sizes,
        "channel_alignment": align,
        "layers": [r.to_dict() for r in pruned.layers],
        "lrn_windows": [r.to_dict() for r in pruned.lrns],
        "files": files,
        "verification": verification,
        "accuracy": accuracy,
        "quantization": quantization,
        "versions": library_versions(),
    }


def to_json(manifest: dict) -> str:
    """Indented JSON with lists of numbers kept on one line (filter indices, shapes, classes)."""
    # Only a real array can start with "[" + newline: JSON strings never hold a raw newline.
    numbers = re.compile(r"\[\n\s*(-?[0-9][-0-9.eE+]*(?:,\n\s*-?[0-9][-0-9.eE+]*)*)\n\s*\]")
    return numbers.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                       json.dumps(manifest, indent=2))


def write_manifest(manifest: dict, path: Path) -> None:
    atomic_write(path, to_json(manifest) + "\n")
