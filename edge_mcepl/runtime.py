"""Torch-free inference on a device: onnxruntime + numpy, and Pillow for image files.

An edge device may only have onnxruntime and numpy installed, so this module (and the CLI path
of ``edge-mcepl infer`` / ``bench-infer``) must never import torch — a test runs the commands in
a fresh interpreter and checks ``sys.modules``. Everything here works on the files
``edge-mcepl export`` writes: input ``input`` (float32 N×C×H×W, dynamic N), output ``logits``, and
``manifest.json``, whose ``preprocessing`` recipe turns raw uint8 images into that input.
Image files (a camera's PNG/JPEG frames) are read with Pillow, imported only when images are given,
so a device that feeds ``.npy`` batches needs nothing beyond onnxruntime and numpy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .data.preprocessing import Step, apply_steps
from .errors import UserError

DENSE_SIBLING = "dense.onnx"  # what export writes beside model.onnx: the same network, nothing removed
MANIFEST_SIBLING = "manifest.json"  # … and its manifest, which holds the input preprocessing


@dataclass(frozen=True)
class ModelInfo:
    input_name: str
    input_shape: tuple[int | None, ...]  # per-example shape (C, H, W); None where symbolic
    num_classes: int | None

    def takes(self, shape: tuple[int, ...]) -> bool:
        """Whether the model takes examples of ``shape`` (a symbolic dimension takes any size)."""
        return len(shape) == len(self.input_shape) and all(
            want is None or want == got for want, got in zip(self.input_shape, shape))


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


def _load_npy(path: Path, culprit: str) -> np.ndarray:
    """The array in ``path``; ``culprit`` starts the error line (the path, or the option and the path)."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{culprit}: file not found") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{culprit}: not a readable .npy array ({exc})") from None


def load_inputs(path: str | Path, info: ModelInfo | None = None,
                preprocessing: Mapping | None = None) -> np.ndarray:
    """A ``.npy`` array as float32 N×C×H×W model inputs (a single image becomes N = 1).

    Without ``preprocessing`` the array must already be normalised like the training data, so
    integer arrays are refused: raw 0…255 pixels fed as they are give confident nonsense. With the
    manifest's ``preprocessing``, the array must be raw uint8 images (:func:`preprocess_uint8`).
    An empty batch or a NaN/infinite value is refused too: onnxruntime would answer with nothing,
    or with a class for garbage, and a device would act on it.
    """
    path = Path(path)
    x = _load_npy(path, f"{path} (inputs)")
    if preprocessing is not None:
        try:
            x = preprocess_uint8(x, preprocessing)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    elif x.dtype.kind in "iu":
        raise UserError(f"{path}: inputs are {x.dtype} — raw pixels? Pass --raw-uint8 to apply the manifest's "
                        "preprocessing, or give float32 N×C×H×W normalised like the training data")
    elif x.dtype.kind != "f":
        raise UserError(f"{path}: inputs must be numeric (float32 N×C×H×W), got dtype {x.dtype}")
    if info is not None and x.ndim == len(info.input_shape):
        x = x[None]
    if x.ndim != 4:
        raise UserError(f"{path}: inputs must be N×C×H×W, got shape {x.shape}")
    if info is not None and not info.takes(x.shape[1:]):
        raise UserError(f"{path}: inputs are {x.shape[1:]} per example, the model takes {info.input_shape}")
    if len(x) == 0:
        raise UserError(f"{path}: no inputs (shape {x.shape})")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        raise UserError(f"{path}: {int(bad.sum())} NaN or infinite value(s), the first in input "
                        f"{int(np.argwhere(bad)[0][0])}; the model needs finite inputs")
    return x


def load_labels(path: str | Path, count: int, num_classes: int | None) -> np.ndarray:
    """``--labels``: one integer class in [0, ``num_classes``) per input, checked before inference runs.

    A float or out-of-range label would only ever compare unequal, and the accuracy would be a
    wrong number rather than an error. ``num_classes`` None (a symbolic output size): only negative
    labels are refused.
    """
    culprit = f"--labels {path}"
    labels = _load_npy(Path(path), culprit).reshape(-1)
    if labels.dtype.kind not in "iu":
        raise UserError(f"{culprit}: labels must be integers (class indices), got dtype {labels.dtype}")
    if len(labels) != count:
        raise UserError(f"{culprit}: {len(labels)} labels for {count} inputs")
    limit = np.inf if num_classes is None else num_classes
    outside = np.flatnonzero((labels < 0) | (labels >= limit))
    if outside.size:
        i = int(outside[0])
        raise UserError(f"{culprit}: label {labels[i]} (input {i}) is not one of the model's classes "
                        f"[0, {limit})")
    return labels.astype(np.int64)


def load_preprocessing(model: str | Path, manifest: str | Path | None = None) -> dict:
    """The ``preprocessing`` object of ``manifest`` (default: the ``manifest.json`` beside ``model``)."""
    path = Path(manifest) if manifest is not None else Path(model).with_name(MANIFEST_SIBLING)
    try:
        entry = json.loads(path.read_text()).get("preprocessing")
    except FileNotFoundError:
        raise UserError(f"{path}: manifest not found (export writes it beside model.onnx; pass --manifest)") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: not a readable export manifest ({exc})") from None
    if not isinstance(entry, dict):
        raise UserError(f"{path}: no 'preprocessing' in this manifest (exported by an older edge-mcepl; re-export)")
    return entry


def _require_raw(preprocessing: Mapping) -> None:
    if preprocessing.get("raw") is None:
        raise UserError(f"the model was trained on {preprocessing.get('dataset')} data, there is no uint8 "
                        f"preprocessing: {preprocessing.get('rule')}")


def preprocess_uint8(images: np.ndarray, preprocessing: Mapping) -> np.ndarray:
    """Raw uint8 images → the float32 N×C×H×W inputs the training loader made of them, bit for bit.

    ``preprocessing`` is the manifest's object; its steps are applied exactly as its ``rule`` says.
    ``images`` is N×C×H×W, N×H×W×C (a camera's usual layout), or one image of either layout;
    N×C×H×W is assumed when both readings fit (C = H = W).
    """
    _require_raw(preprocessing)
    shape = tuple(preprocessing["input"]["shape"])
    x = images[None] if images.ndim == len(shape) else images
    if x.ndim == 4 and x.shape[1:] != shape and x.shape[1:] == (*shape[1:], shape[0]):
        x = x.transpose(0, 3, 1, 2)
    if x.shape[1:] != shape:
        raise UserError(f"images are {images.shape}; expected N×{'×'.join(map(str, shape))} or "
                        f"N×{'×'.join(map(str, (*shape[1:], shape[0])))} (or one image)")
    return apply_steps(x, [Step.from_dict(step) for step in preprocessing["steps"]])


IMAGE_MODES = {1: "L", 3: "RGB"}  # model channels → the Pillow mode an image is converted to


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The files ``inputs`` names: each file as given, each folder's files in sorted name order.

    A folder is read flat (no subfolders), skipping hidden files (``.DS_Store`` and the like); the
    order is plain character order of the names, so frame numbers need zero padding to sort.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted((p for p in item.iterdir() if p.is_file() and not p.name.startswith(".")),
                           key=lambda p: p.name)
            if not found:
                raise UserError(f"{item}: no image files in this folder")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"{item}: no such file or folder")
    return files


def read_image(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """One image file as the uint8 C×H×W pixels the manifest's steps apply to.

    Rotated upright by its EXIF orientation (a camera's portrait frames), converted with Pillow to
    RGB or grayscale ("L": ITU-R 601-2 luma; alpha dropped), and resized to H×W with Pillow's
    bilinear filter (``Image.resize``, antialiased when shrinking; the aspect ratio is not kept,
    nothing is cropped) unless it already is H×W. 16-bit and float images are refused: the
    preprocessing is defined on 8-bit values, and Pillow would clip them.
    """
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise UserError(f"{path}: reading images needs Pillow (pip install pillow), or pass a .npy batch") from None
    mode = IMAGE_MODES.get(channels)
    if mode is None:
        raise UserError(f"{path}: the model takes {channels}-channel inputs; image files can feed 1 (grayscale) "
                        "or 3 (RGB) channels only — pass a .npy batch")
    try:
        with Image.open(path) as image:
            if image.mode.startswith(("I", "F")):
                raise UserError(f"{path}: {image.mode} image (16-bit or float); the model's preprocessing takes 8-bit "
                                "pixels — convert it to 8 bits per channel")
            image = ImageOps.exif_transpose(image).convert(mode)
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"{path}: not a readable image ({exc})") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def load_images(paths: Sequence[Path], preprocessing: Mapping, info: ModelInfo | None = None) -> np.ndarray:
    """Image files → the float32 N×C×H×W input the model was trained on, through the manifest's ``preprocessing``.

    The images are made the manifest's input size, so that size must be the model's (a ``--manifest``
    of another export is refused before any file is read).
    """
    _require_raw(preprocessing)  # no image can feed a model trained on synthetic float32 data
    shape = tuple(preprocessing["input"]["shape"])
    if info is not None and not info.takes(shape):
        raise UserError(f"the manifest's input shape {shape} is not the model's {info.input_shape} "
                        "(a manifest of another export?)")
    channels, height, width = shape
    pixels = np.stack([read_image(path, channels, height, width) for path in paths])
    return preprocess_uint8(pixels, preprocessing)


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
        known = [d for d in info.input_shape if d is not None]
        if len(known) != len(info.input_shape):
            raise UserError(f"{name}: the model's input shape {info.input_shape} is not fully known")
        x = np.random.default_rng(seed).standard_normal((batch, *known)).astype(np.float32)
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
