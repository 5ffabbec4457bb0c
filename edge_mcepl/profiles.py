"""Device profiles: what a device can do, what its application allows, and the structure it gets.

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
    retention_ratio: auto           # "auto" (the structure policy below: an ordered width) or a
                                    # float 0.01–1.0: fraction of conv weights KEPT, full width

Validation is strict, like the lab config's (:class:`ProfileFile`, through
:mod:`edge_mcepl.validation`): an unknown key, a missing one, a wrong type (an int field does not
take 4.0 or true) or an out-of-range value is a one-line :class:`UserError` naming the file and the
dotted field.

**Structure policy** (``retention_ratio: auto``): the device gets the widest ordered width
(docs/algorithm.md#width) on the ladder 1/16, 2/16, …, 1 whose *exported* model fits both budgets::

    budget_macs   = gflops · 1e9 · EFFICIENCY · inference_latency_ms / 1000 / 2   # multiply-adds per image
    budget_params = model_memory_mb · 2^20 / 4                                     # fp32 parameters
    width = max{ w : exported_macs(w) ≤ budget_macs and exported_params(w) ≤ budget_params }

where ``exported_macs`` / ``exported_params`` are counted by the exporter's own pruning code on
that structure (:mod:`edge_mcepl.export.cost`: LRN windows and channel alignment included — the
numbers the manifest of the exported file will show). The conv / linear retention *inside* the
kept filters stays the lab's. ``EFFICIENCY`` = 0.3 is the share of the matmul micro-benchmark's
GFLOP/s that a small conv net reaches at batch 1. A ladder (not a continuum) makes two runs of
``profile detect`` on the same machine agree despite micro-benchmark noise; its narrowest step is
HeteroFL's 1/16, and a device that cannot meet its budget even there gets it anyway, said so in
one line. A numeric ``retention_ratio`` is the unstructured choice of earlier releases: that share
of conv weights at full width (no filter need go, so the export saves memory, not time).
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .errors import UserError
from .validation import StrictModel, read_yaml, validate

BUNDLED_DIR = Path(__file__).resolve().parent / "device_profiles"
EFFICIENCY = 0.3
WIDTHS: tuple[float, ...] = tuple(k / 16 for k in range(1, 17))  # the policy's ladder: 1/16 (HeteroFL's narrowest) … 1
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
# Policy: capability + budget → structure


@dataclass(frozen=True)
class StructureDecision:
    """What a profile gives its agent: the ordered width, the conv retention it sets (if any), and why."""

    width: float
    retention: float | None  # conv retention inside the kept filters set by the profile; None: the lab's
    source: str  # "profile" (explicit retention_ratio), "policy"
    detail: str  # one line: how it was derived
    budget_macs: int  # multiply-adds per image the latency budget allows
    budget_params: int  # fp32 parameters the memory budget holds
    exported_macs: int  # what the exported model of this width computes (the exporter's own count)
    exported_params: int


def budget_macs(profile: DeviceProfile) -> int:
    """Multiply-adds per image that fit the latency budget: GFLOP/s · EFFICIENCY · latency / 2."""
    return int(profile.gflops * 1e9 * EFFICIENCY * profile.inference_latency_ms / 1000.0 / 2)


def budget_params(profile: DeviceProfile) -> int:
    """fp32 parameters that fit the model-memory budget."""
    return int(profile.model_memory_mb * 2**20 // 4)


def policy_structure(profile: DeviceProfile, model_name: str, num_classes: int = 10) -> StructureDecision:
    """The profile's structure for ``model_name``: explicit retention (full width), or the documented policy."""
    from .export.cost import exported_cost

    macs, params = budget_macs(profile), budget_params(profile)

    def decision(width: float, retention: float | None, source: str, detail: str) -> StructureDecision:
        cost = exported_cost(model_name, width, num_classes)
        return StructureDecision(width, retention, source, f"{detail}; exports {_fits(cost.macs, macs, 'MACs')}, "
                                 f"{_fits(cost.params, params, 'parameters')}", macs, params, cost.macs, cost.params)

    if profile.retention_ratio != "auto":
        r = float(profile.retention_ratio)
        return decision(1.0, r, "profile", f"{profile.name}: retention_ratio {r:g} set in the profile (unstructured, "
                        "width 1: no filter need go)")
    costs = {w: exported_cost(model_name, w, num_classes) for w in WIDTHS}
    fits = [w for w, cost in costs.items() if cost.macs <= macs and cost.params <= params]
    width = max(fits) if fits else WIDTHS[0]
    return decision(width, None, "policy", f"{profile.name}: auto → width {width:g} for {model_name} "
                    f"({_binding(profile, model_name, num_classes, width, bool(fits))})")


def _fits(got: int, budget: int, what: str) -> str:
    return f"{got / 1e6:.3g} M {what} {'≤' if got <= budget else '>'} budget {budget / 1e6:.3g} M"


def _binding(profile: DeviceProfile, model_name: str, num_classes: int, width: float, met: bool) -> str:
    """What sets the width: the budget the next wider step would break, or the ends of the ladder.

    Naming it matters: at full width a faster device changes nothing; below the narrowest step the
    budget cannot be met at all and the device gets the narrowest model anyway.
    """
    from .export.cost import exported_cost

    if not met:
        return f"no width meets the budgets: the narrowest, {WIDTHS[0]:g}, is used"
    if width == WIDTHS[-1]:
        return "full width: both budgets allow every filter"
    wider = exported_cost(model_name, WIDTHS[WIDTHS.index(width) + 1], num_classes)
    return "latency-bound" if wider.macs > budget_macs(profile) else "memory-bound"

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
