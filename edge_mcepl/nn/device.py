"""Where a lab computes: the CPU (every edge device) or a CUDA GPU (a whole lab simulated on a GPU box).

Everything seeded — fixed weights, scores, priors, Dis-PFL's initial masks, partitions, batch
order — is still drawn on the CPU and only then moved, so a GPU run starts from exactly the state
a CPU run starts from. Only the kernels' floating-point order differs: a CUDA run is not bit-identical
to a CPU run, and may differ from another CUDA run (some cuDNN backward kernels are non-deterministic).
"""

from __future__ import annotations

import torch

from ..errors import UserError


def resolve_device(name: str) -> torch.device:
    """The torch device for a config's (validated) ``device``; a UserError when that GPU is not there."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device: {name!r} asked for, but torch {torch.__version__} sees no CUDA GPU; "
                            "use device: cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device: {name!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
        # With its index, so `tensor.device == device` holds for tensors already there ("cuda" ≠ "cuda:0").
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    return device


def describe_device(device: torch.device) -> str:
    """One line for logs and reports: 'cpu' or the GPU's name."""
    return "cpu" if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"
