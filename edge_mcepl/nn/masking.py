"""The mask function of MCE-PL and the aggregation tensor.

See docs/algorithm.md#mask-function and docs/algorithm.md#aggregation-tensor.

Per masked layer, with scores ``z``, neighbour mean ``m̄`` and retention ratio ``r``::

    a = mean|z|                      (scalar, no gradient)
    y = z + a · sign(z) ⊙ m̄          ⇔ |y| = |z| + a · m̄
    m = TopK_r(|y|)                  (straight-through: ∂m/∂|y| = identity)

so the gradient of the loss w.r.t. ``z`` is ``sign(z) ⊙ w ⊙ ∂L/∂v`` with ``v = w ⊙ m`` — every
entry, kept or pruned, gets a gradient and can come back.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor


def kept_count(numel: int, retention_ratio: float) -> int:
    """Entries TopK keeps: n − ⌊(1 − r)·n⌋ (the reference's rounding: r = 0.3 keeps 30 % rounded up).

    Computed exactly, on the decimal the user wrote (``Fraction(str(r))``): in floating point
    (1 − 0.9)·1280 is 127.99…, so a layer of 1,280 weights at r = 0.9 would keep 1,153, not 1,152.
    """
    r = Fraction(str(retention_ratio))
    return numel - math.floor((1 - r) * numel)


def aggregation_tensor(scores: Tensor, neighbour_mean: Tensor | None) -> Tensor:
    """``y = z + mean|z| · sign(z) ⊙ m̄`` (detached): neighbours' votes add magnitude to an entry.

    ``neighbour_mean=None`` is the "no aggregation tensor" ablation (m̄ ≡ 0, so y = z).
    """
    z = scores.detach()
    if neighbour_mean is None:
        return z
    return z + z.abs().mean() * torch.sign(z) * neighbour_mean


def aggregation_magnitude(scores: Tensor, neighbour_mean: Tensor | None) -> Tensor:
    """``|y| = |z| + mean|z| · m̄`` directly — what TopK ranks — in three passes instead of six.

    (Equal to ``aggregation_tensor(...).abs()`` except at scores that are exactly 0, where
    sign(0) = 0 there; docs/algorithm.md#aggregation-tensor defines the mask by this form.)
    """
    magnitude = scores.detach().abs()
    if neighbour_mean is not None:
        magnitude.add_(neighbour_mean, alpha=float(magnitude.mean()))
    return magnitude


# Below this size a plain kthvalue is as fast as anything cleverer.
_SELECT_DIRECT = 1 << 16
_SAMPLE_SIZE = 1 << 12


def kth_smallest(flat: Tensor, k: int) -> Tensor:
    """Exact k-th smallest (1-based) of a 1-D tensor, ≈ 5× faster than ``kthvalue`` on big layers.

    A strided sample brackets the answer; only the entries inside the bracket (a few percent) go
    through ``kthvalue``. The bracket is verified by counting, so the result is always exact; a
    missed bracket (rare) falls back to a full sort — not ``kthvalue``, whose quickselect takes
    seconds on already-sorted input.
    """
    n = flat.numel()
    if n <= _SELECT_DIRECT:
        return torch.kthvalue(flat, k).values
    sample = torch.sort(flat[:: n // _SAMPLE_SIZE]).values
    s = sample.numel()
    q = k / n
    spread = 6.0 * math.sqrt(q * (1.0 - q) / s) + 2.0 / s
    lo = sample[max(int((q - spread) * s), 0)]
    hi = sample[min(int((q + spread) * s) + 1, s - 1)]
    below = int((flat < lo).sum())
    inside = flat[(flat >= lo) & (flat <= hi)]
    if below < k <= below + inside.numel():
        return torch.kthvalue(inside, k - below).values
    return torch.sort(flat).values[k - 1]


def topk_mask(magnitude: Tensor, retention_ratio: float) -> Tensor:
    """Binary mask keeping exactly :func:`kept_count` of the largest entries of ``magnitude``.

    The threshold comes from :func:`kth_smallest` (a selection, not a full sort). Entries tied with the
    threshold are kept in flat-index order (lowest index first) until the count is exact, so the
    result is deterministic and the count never drifts.
    """
    return top_entries(magnitude, kept_count(magnitude.numel(), retention_ratio))


def top_entries(magnitude: Tensor, keep: int) -> Tensor:
    """Binary mask of exactly ``keep`` largest entries (ties: lowest flat index first), see :func:`topk_mask`."""
    flat = magnitude.reshape(-1)
    n = flat.numel()
    if keep >= n:
        return torch.ones_like(magnitude)
    if keep <= 0:
        return torch.zeros_like(magnitude)
    threshold = kth_smallest(flat, n - keep)
    above = flat > threshold
    missing = keep - int(above.sum())
    if missing > 0:
        tied = torch.nonzero(flat == threshold).reshape(-1)[:missing]
        above[tied] = True
    return above.to(magnitude.dtype).reshape(magnitude.shape)


def drop_sparse_filters(mask: Tensor, min_kept_per_filter: int) -> Tensor:
    """Filter-drop rule: zero every output filter (conv) / row (linear) with ≤ ``min_kept`` ones.

    A filter that keeps only a handful of weights contributes little but still costs a whole
    channel at inference; dropping it lets export remove the channel physically.
    """
    kept_per_filter = mask.reshape(mask.shape[0], -1).sum(dim=1)
    alive = (kept_per_filter > min_kept_per_filter).to(mask.dtype)
    return mask * alive.reshape((-1,) + (1,) * (mask.dim() - 1))


def live_filters(mask: Tensor) -> int:
    """Output filters / rows with at least one kept weight."""
    return int((mask.reshape(mask.shape[0], -1).sum(dim=1) > 0).sum())


class StraightThroughMask(torch.autograd.Function):
    """``v = w ⊙ m`` forward; ``∂L/∂z = sign(z) ⊙ w ⊙ ∂L/∂v`` backward (docs/algorithm.md#aggregation-tensor)."""

    @staticmethod
    def forward(ctx, scores: Tensor, weight: Tensor, mask: Tensor) -> Tensor:
        ctx.save_for_backward(scores, weight)
        return weight * mask

    @staticmethod
    def backward(ctx, grad_v: Tensor):
        scores, weight = ctx.saved_tensors
        return grad_v * weight * torch.sign(scores), None, None
