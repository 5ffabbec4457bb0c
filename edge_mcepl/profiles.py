"""Device profiles: what a device can do, what its application allows, and the retention it gets.

A profile is a small YAML file (bundled ones live in ``device_profiles/``, shipped inside the
package as ``edge_mcepl/device_profiles/``)::

    name: rpi4                      # [A-Za-z0-9_.-], 1–64 characters
    description: Raspberry Pi 4 …   # optional free text
    hardware:                       # capability (facts about the machine)
      cores: 4                      # int 1–1024: CPU cores used for training
      memory_mb: 4096               # int 16–16,777,216: RAM
      gflops: 8.0                   # float 0.01–1e6: measured float32 GFLOP/s (matmul, all cores)
      uplink_mbps: 50.0             # float 0.01–1e6: upload bandwidth
    budget:                         # what the application running the model allows
      inference_latency_ms: 10.0    # float 0.01–1e6: per-image latency budget (batch 1)
      model_memory_mb: 64.0         # float 0.1–1e6: memory for the deployed weights
    training:                       # optional section
      threads: 4                    # int 1–1024 or null (null: hardware.cores)
      batch_size: null              # int 1–1e6 or null (null: the lab's algorithm.batch_size)
    retention_ratio: auto           # "auto" (the policy below) or a float 0.01–1.0: fraction of
                                    # conv weights KEPT

Validation is strict, like the lab config's (:class:`ProfileFile`, through
:mod:`edge_mcepl.validation`): an unknown key, a missing one, a wrong type (an int field does not
take 4.0 or true) or an out-of-range value is a one-line :class:`UserError` naming the file and the
dotted field.

**Retention policy** (``retention_ratio: auto``), for a model with conv multiply-adds ``C``,
linear multiply-adds ``L``, conv weights ``Wc`` and linear weights ``Wl`` (per image, dense) and
the lab's linear retention ``r_lin``::

    flops_in_budget = gflops · 1e9 · EFFICIENCY · inference_latency_ms / 1000
    r_latency = (flops_in_budget − 2 · L · r_lin) / (2 · C)      # conv share of the FLOPs that fit
    r_memory  = (model_memory_mb · 2^20 − 4 · Wl · r_lin) / (4 · Wc)   # fp32 kept conv weights that fit
    retention = floor_to_0.05( clamp(min(r_latency, r_memory), R_MIN, R_MAX) )

``EFFICIENCY`` = 0.3 is the share of the matmul micro-benchmark's GFLOP/s that a small conv net
reaches at batch 1; ``R_MIN`` = 0.05 keeps a trainable subnetwork; ``R_MAX`` = 0.5 because mask
learning needs something to choose — at 0.5 the number of possible masks is largest, and keeping
more only brings the model closer to the dense random network. Flooring to steps of 0.05 makes
two runs of ``profile detect`` on the same machine agree despite micro-benchmark noise. The
latency term assumes the exported model's multiply-adds scale with the kept share of conv weights,
which is what filter dropping (the ``structured`` preset) and export deliver; a mask that removes
no whole filter saves memory, not time.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import socket
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .errors import UserError
from .validation import StrictModel, read_yaml, validate

BUNDLED_DIR = Path(__file__).resolve().parent / "device_profiles"
EFFICIENCY = 0.3
R_MIN, R_MAX, R_STEP = 0.05, 0.5, 0.05
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    cores: int
    memory_mb: int
    gflops: float
    uplink_mbps: float
    inference_latency_ms: float
    model_memory_mb: float
    retention_ratio: float | str  # a number, or "auto"
    threads: int | None = None
    batch_size: int | None = None
    description: str = ""
    source: str = "profile"  # the file it came from (for messages)

    @property
    def training_threads(self) -> int:
        return self.threads or self.cores

    def to_dict(self) -> dict[str, Any]:
        """The profile as its YAML mapping (round-trips through :func:`profile_from_dict`)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["hardware"] = {"cores": self.cores, "memory_mb": self.memory_mb, "gflops": self.gflops,
                           "uplink_mbps": self.uplink_mbps}
        out["budget"] = {"inference_latency_ms": self.inference_latency_ms, "model_memory_mb": self.model_memory_mb}
        out["training"] = {"threads": self.threads, "batch_size": self.batch_size}
        out["retention_ratio"] = self.retention_ratio
        return out


# ---------------------------------------------------------------------------------------------
# Loading and validation


class _Hardware(StrictModel):
    cores: int = Field(ge=1, le=1024)
    memory_mb: int = Field(ge=16, le=16_777_216)
    gflops: float = Field(ge=0.01, le=1e6)
    uplink_mbps: float = Field(ge=0.01, le=1e6)


class _Budget(StrictModel):
    inference_latency_ms: float = Field(ge=0.01, le=1e6)
    model_memory_mb: float = Field(ge=0.1, le=1e6)


class _Training(StrictModel):
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class ProfileFile(StrictModel):
    """The YAML shape of a profile (the schema in the module docstring); :class:`DeviceProfile` is its flat form."""

    name: str = Field(pattern=NAME_PATTERN, description="a name of 1–64 letters, digits, '_', '.' or '-'")
    description: str = ""
    hardware: _Hardware
    budget: _Budget
    training: _Training = Field(default_factory=_Training)
    retention_ratio: Literal["auto"] | Annotated[float, Field(ge=0.01, le=1.0)]

    @field_validator("training", mode="before")
    @classmethod
    def _empty_training(cls, training: Any) -> Any:
        """``training:`` with nothing under it (null) is the same as leaving the optional section out."""
        return {} if training is None else training



def bundled_profiles() -> list[str]:
    """Names of the profiles shipped with the package (``rpi4``, ``laptop``, …)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def resolve_profile_path(spec: str | os.PathLike) -> Path:
    """A file path as given, or a bare name (``rpi4`` / ``rpi4.yaml``) among the bundled profiles."""
    path = Path(spec)
    if path.is_file():
        return path
    text = str(spec)
    if "/" not in text and os.sep not in text:
        stem = text[:-5] if text.endswith(".yaml") else text[:-4] if text.endswith(".yml") else text
        bundled = BUNDLED_DIR / f"{stem}.yaml"
        if bundled.is_file():
            return bundled
    raise UserError(f"--profile {text}: no such file, and not a bundled profile "
                    f"(bundled: {', '.join(bundled_profiles())})")


def load_profile(spec: str | os.PathLike) -> DeviceProfile:
    """Load and validate a profile given as a path or a bundled name."""
    path = resolve_profile_path(spec)
    return profile_from_dict(read_yaml(path, "profile"), str(path))


def profile_from_dict(raw: Any, source: str = "profile") -> DeviceProfile:
    """Validate a plain mapping into a :class:`DeviceProfile`; one-line errors name source and field."""
    shape = validate(ProfileFile, raw, source)
    hw, budget, training = shape.hardware, shape.budget, shape.training
    return DeviceProfile(
        name=shape.name, description=shape.description, cores=hw.cores, memory_mb=hw.memory_mb, gflops=hw.gflops,
        uplink_mbps=hw.uplink_mbps, inference_latency_ms=budget.inference_latency_ms,
        model_memory_mb=budget.model_memory_mb, threads=training.threads, batch_size=training.batch_size,
        retention_ratio=shape.retention_ratio, source=source)


# ---------------------------------------------------------------------------------------------
# Policy: capability + budget → retention ratio


@dataclass(frozen=True)
class ModelCost:
    """Dense per-image multiply-adds and weight counts of a zoo model's masked layers."""

    conv_macs: int
    linear_macs: int
    conv_weights: int
    linear_weights: int


@cache
def model_cost(model_name: str) -> ModelCost:
    """Count a zoo model's conv/linear multiply-adds with one forward pass of a zero image."""
    import torch

    from .nn.layers import MaskedConv2d
    from .nn.zoo import build_model

    model = build_model(model_name)
    macs = {"conv": 0, "linear": 0}
    weights = {"conv": 0, "linear": 0}
    hooks = []
    for _, layer in model.masked_layers():
        kind = "conv" if isinstance(layer, MaskedConv2d) else "linear"
        weights[kind] += layer.weight.numel()

        def hook(module, _inputs, output, kind=kind):
            spatial = output.shape[2] * output.shape[3] if output.dim() == 4 else 1
            macs[kind] += module.weight.numel() * spatial

        hooks.append(layer.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros((1, *model.input_shape)))
    for h in hooks:
        h.remove()
    return ModelCost(macs["conv"], macs["linear"], weights["conv"], weights["linear"])


@dataclass(frozen=True)
class RetentionDecision:
    retention: float
    source: str  # "profile" (explicit), "policy"
    detail: str  # one line: how it was derived


def policy_retention(profile: DeviceProfile, model_name: str, linear_retention: float = 0.9) -> RetentionDecision:
    """The profile's conv retention ratio for ``model_name``: explicit, or the documented policy."""
    if profile.retention_ratio != "auto":
        r = float(profile.retention_ratio)
        return RetentionDecision(r, "profile", f"{profile.name}: retention_ratio {r:g} set in the profile")
    cost = model_cost(model_name)
    flops = profile.gflops * 1e9 * EFFICIENCY * profile.inference_latency_ms / 1000.0
    r_latency = (flops - 2 * cost.linear_macs * linear_retention) / (2 * cost.conv_macs)
    r_memory = (profile.model_memory_mb * 2**20 - 4 * cost.linear_weights * linear_retention) / (4 * cost.conv_weights)
    raw = min(r_latency, r_memory)
    clamped = min(max(raw, R_MIN), R_MAX)
    r = round(math.floor(clamped / R_STEP + 1e-9) * R_STEP, 2)
    r = max(r, R_MIN)
    return RetentionDecision(r, "policy", f"{profile.name}: auto → {r:g} for {model_name} "
                             f"({binding_constraint(r_latency, r_memory)}; latency bound {r_latency:.3f}, memory "
                             f"bound {r_memory:.3f}; clamped to [{R_MIN}, {R_MAX}], floored to {R_STEP})")


def binding_constraint(r_latency: float, r_memory: float) -> str:
    """What sets the retention: the tighter budget, unless the clamp to [R_MIN, R_MAX] overrides it.

    Naming the clamp matters: at the cap both budgets would allow more (a faster device changes
    nothing), at the floor the budget cannot be met at all.
    """
    tighter = "latency" if r_latency <= r_memory else "memory"
    raw = min(r_latency, r_memory)
    if raw > R_MAX:
        return f"capped at R_MAX = {R_MAX}: both budgets allow more"
    if raw < R_MIN:
        return f"raised to the floor R_MIN = {R_MIN}: the {tighter} budget cannot be met even at the minimum"
    return f"{tighter}-bound"


# ---------------------------------------------------------------------------------------------
# Detection


def measure_gflops(seconds: float = 1.0, size: int = 512, threads: int | None = None) -> float:
    """float32 GFLOP/s of a square matmul on this machine (best of repeated timed batches)."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.rand((size, size), generator=gen)
        b = torch.rand((size, size), generator=gen)
        torch.mm(a, b)  # warm-up
        best, deadline = 0.0, time.perf_counter() + seconds
        while True:
            start = time.perf_counter()
            reps = 0
            while reps < 4 or time.perf_counter() - start < 0.05:
                torch.mm(a, b)
                reps += 1
            elapsed = time.perf_counter() - start
            best = max(best, 2 * size**3 * reps / elapsed / 1e9)
            if time.perf_counter() >= deadline:
                return best
    finally:
        torch.set_num_threads(previous)


def detect_profile(seconds: float = 1.0, name: str | None = None) -> DeviceProfile:
    """A profile of this machine: psutil for cores and memory, a matmul micro-benchmark for GFLOP/s.

    The uplink cannot be measured without a peer and the budgets are the application's choice, so
    those get conservative defaults (marked in the written file) that the user should edit.
    """
    import psutil

    cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    memory_mb = int(psutil.virtual_memory().total // 2**20)
    gflops = round(measure_gflops(seconds, threads=cores), 2)
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", name or socket.gethostname() or "this-machine")[:64] or "this-machine"
    cpu = platform.processor() or platform.machine()
    return profile_from_dict({
        "name": host,
        "description": f"detected on {platform.system()} {platform.machine()} ({cpu}), {time.strftime('%Y-%m-%d')}",
        "hardware": {"cores": int(min(cores, 1024)), "memory_mb": max(16, memory_mb),
                     "gflops": max(0.01, gflops), "uplink_mbps": 100.0},
        "budget": {"inference_latency_ms": 10.0, "model_memory_mb": float(max(1, min(256, memory_mb // 20)))},
        "training": {"threads": int(min(cores, 1024)), "batch_size": None},
        "retention_ratio": "auto",
    }, "detected profile")


def profile_yaml(profile: DeviceProfile, measured_seconds: float | None = None) -> str:
    """The profile as a commented YAML document (what ``profile detect`` writes)."""
    p = profile
    measured = f" (matmul micro-benchmark, {measured_seconds:g} s)" if measured_seconds else ""
    lines = [
        "# Device profile for edge-mcepl (schema: README.md, \"Device lab\"; edge_mcepl/profiles.py).",
        f"name: {p.name}",
        f"description: {json.dumps(p.description)}",
        "hardware:",
        f"  cores: {p.cores}",
        f"  memory_mb: {p.memory_mb}",
        f"  gflops: {p.gflops}            # measured float32 GFLOP/s{measured}",
        f"  uplink_mbps: {p.uplink_mbps}      # NOT measured (needs a peer): set your link's upload speed",
        "budget:                  # your application's limits — edit them",
        f"  inference_latency_ms: {p.inference_latency_ms}",
        f"  model_memory_mb: {p.model_memory_mb}",
        "training:",
        f"  threads: {'null' if p.threads is None else p.threads}",
        f"  batch_size: {'null' if p.batch_size is None else p.batch_size}        # null: the lab's batch size",
        f"retention_ratio: {p.retention_ratio}      # auto: derived from capability + budget (README)",
    ]
    return "\n".join(lines) + "\n"
