"""Torch-free inference on a device: onnxruntime + numpy, nothing else.

An edge device may only have onnxruntime and numpy installed, so this module (and the CLI path
of ``edge-mcepl infer`` / ``bench-infer``) must never import torch — a test runs the commands in
a fresh interpreter and checks ``sys.modules``. Everything here works on the files
``edge-mcepl export`` writes: input ``input`` (float32 N×C×H×W, dynamic N), output ``logits``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import UserError

DENSE_SIBLING = "dense.onnx"  # what export writes beside model.onnx: the same network, nothing removed


@dataclass(frozen=True)
class ModelInfo:
    input_name: str
    input_shape: tuple[int, ...]  # per-example shape (C, H, W); entries may be None when symbolic
    num_classes: int | None


def open_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session using ``threads`` intra-op threads (one inter-op thread)."""
    path = Path(path)
    if threads < 1:
        raise UserError(f"--threads must be ≥ 1, got {threads}")
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise UserError(f"{path}: onnxruntime cannot load this model ({str(exc).splitlines()[0]})") from None


def model_info(session: ort.InferenceSession) -> ModelInfo:
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    shape = tuple(d if isinstance(d, int) else None for d in inp.shape[1:])
    classes = out.shape[-1] if out.shape and isinstance(out.shape[-1], int) else None
    return ModelInfo(inp.name, shape, classes)


def load_inputs(path: str | Path, info: ModelInfo | None = None) -> np.ndarray:
    """A ``.npy`` array of N×C×H×W inputs as float32 (a single C×H×W image becomes N = 1)."""
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: inputs file not found") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable .npy array ({exc})") from None
    if x.dtype.kind not in "fiu":
        raise UserError(f"{path}: inputs must be numeric (float32 N×C×H×W), got dtype {x.dtype}")
    if info is not None and x.ndim == len(info.input_shape):
        x = x[None]
    if x.ndim != 4:
        raise UserError(f"{path}: inputs must be N×C×H×W, got shape {x.shape}")
    if info is not None and any(want is not None and want != got for want, got in zip(info.input_shape, x.shape[1:])):
        raise UserError(f"{path}: inputs are {x.shape[1:]} per example, the model takes {info.input_shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def run_logits(session: ort.InferenceSession, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits for every row of ``x``, ``batch_size`` rows per call."""
    name = session.get_inputs()[0].name
    if len(x) == 0:
        return np.zeros((0, model_info(session).num_classes or 0), dtype=np.float32)
    parts = [session.run(None, {name: np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)})[0]
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts)


def predict(session: ort.InferenceSession, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class per row, logits)."""
    logits = run_logits(session, x, batch_size)
    return logits.argmax(axis=1), logits


def accuracy(session: ort.InferenceSession, x: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    pred, _ = predict(session, x, batch_size)
    return float((pred == np.asarray(labels)).mean()) if len(labels) else float("nan")


def sibling_dense(model: str | Path) -> Path | None:
    """The dense export written beside ``model`` by ``edge-mcepl export``, if there is one."""
    candidate = Path(model).with_name(DENSE_SIBLING)
    return candidate if candidate.is_file() and candidate.resolve() != Path(model).resolve() else None


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p90_ms: float
    runs: int

    def to_dict(self) -> dict:
        return {"p50_ms": round(self.p50_ms, 4), "p90_ms": round(self.p90_ms, 4), "runs": self.runs}


def compare_latency(sessions: Mapping[str, ort.InferenceSession], batch: int, *, seconds: float = 1.0,
                    min_runs: int = 20, warmup: int = 5, seed: int = 0) -> dict[str, Latency]:
    """p50/p90 latency of one call at ``batch`` for each session, runs interleaved.

    Interleaving (A, B, A, B, …) rather than timing A then B matters on shared machines, where
    background load drifts by tens of percent over a few seconds: both models see the same drift.
    Runs continue until ``seconds`` have passed and every model has ``min_runs`` timings.
    """
    feeds = {}
    for name, session in sessions.items():
        info = model_info(session)
        if any(d is None for d in info.input_shape):
            raise UserError(f"{name}: the model's input shape {info.input_shape} is not fully known")
        x = np.random.default_rng(seed).standard_normal((batch, *info.input_shape)).astype(np.float32)
        feeds[name] = {info.input_name: x}
    for name, session in sessions.items():
        for _ in range(warmup):
            session.run(None, feeds[name])
    times: dict[str, list[float]] = {name: [] for name in sessions}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or min(len(t) for t in times.values()) < min_runs:
        for name, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, feeds[name])
            times[name].append(time.perf_counter() - t0)
    return {name: Latency(float(np.percentile(t, 50)) * 1e3, float(np.percentile(t, 90)) * 1e3, len(t))
            for name, t in times.items()}
