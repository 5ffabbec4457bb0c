"""Checks every export must pass: the file computes the masked model, and it is actually smaller.

The reference is the agent's masked model run through the zoo's own forward pass in torch
(:func:`.run.masked_zoo_model`), the file is run through onnxruntime — two independent
implementations of the same function — on at least 256 inputs. A failure is an error with the
numbers, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .prune import PrunedNetwork

TOLERANCE = 1e-4
MIN_INPUTS = 256


def verification_inputs(input_shape: tuple[int, ...], n: int = MIN_INPUTS, real: np.ndarray | None = None,
                        seed: int = 0) -> np.ndarray:
    """``n`` inputs: up to half real images when given, the rest seeded standard-normal noise."""
    n = max(n, MIN_INPUTS)
    take = 0 if real is None else min(len(real), n // 2)
    noise = np.random.default_rng(seed).standard_normal((n - take, *input_shape)).astype(np.float32)
    return noise if real is None or take == 0 else np.concatenate([real[:take].astype(np.float32), noise])


@dataclass(frozen=True)
class Equivalence:
    inputs: int
    max_abs_diff: float
    max_abs_logit: float
    argmax_agreement: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict:
        return {"inputs": self.inputs, "max_abs_diff": self.max_abs_diff, "max_abs_logit": self.max_abs_logit,
                "argmax_agreement": self.argmax_agreement, "tolerance": self.tolerance, "passed": self.passed}


def compare(candidate: np.ndarray, reference: np.ndarray, tolerance: float = TOLERANCE) -> Equivalence:
    if candidate.shape != reference.shape:
        raise UserError(f"export verification: output shape {candidate.shape} differs from the reference "
                        f"{reference.shape}")
    diff = float(np.max(np.abs(candidate.astype(np.float64) - reference))) if candidate.size else 0.0
    if not np.isfinite(diff):
        diff = float("inf")
    agree = float((candidate.argmax(1) == reference.argmax(1)).mean()) if len(candidate) else 1.0
    return Equivalence(len(candidate), diff, float(np.max(np.abs(reference))) if reference.size else 0.0, agree,
                       tolerance)


def check_equivalence(run_onnx: Callable[[np.ndarray], np.ndarray], reference: np.ndarray, inputs: np.ndarray,
                      what: str, tolerance: float = TOLERANCE) -> Equivalence:
    """onnxruntime's output on ``inputs`` against ``reference``; :class:`UserError` with the numbers if off."""
    result = compare(run_onnx(inputs), reference, tolerance)
    if not result.passed:
        raise UserError(f"export verification failed for {what}: max |onnxruntime − masked torch| = "
                        f"{result.max_abs_diff:.3g} over {result.inputs} inputs (tolerance {tolerance:g}, "
                        f"largest logit {result.max_abs_logit:.3g}, argmax agreement {result.argmax_agreement:.4f})")
    return result


def check_smaller(pruned: PrunedNetwork, dense: PrunedNetwork, pruned_bytes: int, dense_bytes: int,
                  what: str) -> None:
    """When filters were removed, the parameter count and the file size must both have dropped."""
    if pruned.filters_removed == 0:
        return
    if not pruned.params < dense.params:
        raise UserError(f"export verification failed for {what}: {pruned.filters_removed} filters removed but "
                        f"parameters did not drop ({pruned.params} vs dense {dense.params})")
    if not pruned_bytes < dense_bytes:
        raise UserError(f"export verification failed for {what}: {pruned.filters_removed} filters removed but "
                        f"the file did not shrink ({pruned_bytes} bytes vs dense {dense_bytes})")
