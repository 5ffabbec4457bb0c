"""The semantic check of a neighbour's masks: each layer keeps what the sender's declared retention keeps.

Every agent's retention (its profile's structure, or the lab's) is declared in the signed roster
(docs/security.md#roster), and MCE-PL's mask keeps exactly :func:`~edge_mcepl.nn.masking.kept_count`
weights of each layer block — so a receiver knows, before aggregating, how many ones each layer of a
sender's message must hold. An all-ones mask, a 5 %-density one or a bit-inverted one (it keeps
1 − r) is refused, however well signed. A rule whose masks may keep fewer (the filter-drop rule,
learned filter selection) is held to the bound instead of the exact count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..nn.masking import kept_count
from ..wire.envelope import CodecError
from .params import Retention


class WrongDensity(CodecError):
    """An authentic mask message whose kept counts are not what its sender declared."""

    reason = "density"


def check_density(masks: Sequence[np.ndarray], kinds: Sequence[str], declared: Retention, *, sender: int,
                  exact: bool) -> None:
    """Raise :class:`WrongDensity` unless every layer keeps the declared count (``exact``) or at most it."""
    for index, (mask, kind) in enumerate(zip(masks, kinds)):
        ratio = declared.conv if kind == "conv" else declared.linear
        want, got = kept_count(mask.size, ratio), int(np.count_nonzero(mask))
        if got > want or (exact and got != want):
            raise WrongDensity(f"agent {sender}'s mask keeps {got} of {mask.size} weights in layer {index}; its "
                               f"declared retention {ratio:g} keeps {'exactly ' if exact else 'at most '}{want}")
