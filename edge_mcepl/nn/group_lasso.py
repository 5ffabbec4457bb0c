"""Group-lasso regulariser on the aggregation tensor (docs/algorithm.md#loss).

``R(y) = λ · Σ_g ‖y_g‖₂`` with one group per output filter (conv) or row (linear). Its gradient
pushes whole filters' scores toward zero together, which — with the filter-drop rule — is what
makes entire filters die and the exported network physically smaller. The gradient is written
in closed form because it is added to the update directly and must stay out of the task-loss
gradient that the consensus step reuses.
"""

from __future__ import annotations

from torch import Tensor

_EPS = 1e-12


def group_lasso(y: Tensor, lam: float) -> Tensor:
    """λ · Σ_g ‖y_g‖₂ over output filters / rows."""
    return lam * y.reshape(y.shape[0], -1).norm(dim=1).sum()


def group_lasso_gradient(y: Tensor, lam: float) -> Tensor:
    """∂R/∂z = λ · y_g / ‖y_g‖₂ (y = z + const, so ∂y/∂z = I); zero for an all-zero group."""
    groups = y.reshape(y.shape[0], -1)
    norms = groups.norm(dim=1, keepdim=True).clamp_min(_EPS)
    return (lam * groups / norms).reshape(y.shape)
