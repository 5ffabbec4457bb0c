"""Ordered width: the nested block of every layer a device of width ρ holds (docs/algorithm.md#width).

As in HeteroFL and FjORD's ordered dropout, a device of width ρ keeps the *first* ⌈ρ·C⌉ output
filters (rows) of every masked layer but the last one (whose outputs are the classes), and of
each following layer the input channels those filters feed. Blocks are prefixes, so they are
nested: a narrower device's block is the leading corner of every wider one's, which is what lets
neighbours of different widths average over the entries they both hold, lets a device compute
with a plain slice of the shared fixed weights (no gather, no multiply by zeros), and lets a
message say which filters it covers by its layer shapes alone.

Shapes only — no torch, no numpy arrays beyond padding — so the wire decoder, export and the
profile policy use the same rule. The chain is the zoo's: masked layers in order, each fed by the
previous one; a linear layer after a conv sees ``in_features / C_prev`` features per channel
(channel-major flatten, so the first k channels are the first k·s features).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

Shape = tuple[int, ...]


def kept_filters(filters: int, width: float) -> int:
    """⌈ρ·C⌉, at least 1, computed on the decimal the user wrote (0.3·10 is 3, not 3.0000000000000004)."""
    return max(1, min(filters, math.ceil(Fraction(str(width)) * filters)))


def _features_per_channel(full: Sequence[Shape], index: int) -> int:
    """How many of layer ``index``'s inputs each output filter of layer ``index − 1`` feeds."""
    fed_by = full[index - 1][0]
    inputs = full[index][1]
    if inputs % fed_by:
        raise ValueError(f"layer {index} has {inputs} inputs, not a multiple of the {fed_by} filters before it: "
                         "the model is not a chain ordered width applies to")
    return inputs // fed_by


def width_shapes(full: Sequence[Shape], width: float) -> list[Shape]:
    """The block shape of every layer for width ``width`` (1: the full shapes themselves)."""
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], got {width!r}")
    shapes: list[Shape] = []
    for index, shape in enumerate(full):
        out = shape[0] if index == len(full) - 1 else kept_filters(shape[0], width)
        inputs = shape[1] if index == 0 else shapes[-1][0] * _features_per_channel(full, index)
        shapes.append((out, inputs, *shape[2:]))
    return shapes


def check_nested(shapes: Sequence[Sequence[int]], full: Sequence[Shape]) -> list[Shape]:
    """``shapes`` as tuples if they are an ordered-width block of ``full``, else ValueError saying where.

    Any consistent prefix is accepted (each layer's inputs are the previous layer's kept filters),
    not only the blocks of one width: the receiver needs the structure to be sound, not its origin.
    """
    if len(shapes) != len(full):
        raise ValueError(f"{len(shapes)} layers, this model has {len(full)}")
    out: list[Shape] = []
    for index, (got, want) in enumerate(zip(shapes, full)):
        got = tuple(int(n) for n in got)
        inputs = want[1] if index == 0 else out[-1][0] * _features_per_channel(full, index)
        last = index == len(full) - 1
        expected_out = f"{want[0]}" if last else f"1..{want[0]}"
        if (len(got) != len(want) or got[2:] != want[2:] or got[1] != inputs
                or not 1 <= got[0] <= want[0] or (last and got[0] != want[0])):
            raise ValueError(f"layer {index} has shape {got}, not an ordered-width block of {want} "
                             f"(expected ({expected_out}, {inputs}, {', '.join(map(str, want[2:]))}))")
        out.append(got)
    return out


def block_slices(shape: Sequence[int]) -> tuple[slice, ...]:
    """Index of the leading block of ``shape`` in a larger tensor: ``t[block_slices(s)]``."""
    return tuple(slice(0, n) for n in shape)


def overlap(a: Sequence[int], b: Sequence[int]) -> Shape:
    """The block two nested blocks share (the smaller extent in every dimension)."""
    return tuple(min(x, y) for x, y in zip(a, b))


def pad_to_full(blocks: Sequence[np.ndarray], full: Sequence[Shape]) -> list[np.ndarray]:
    """Each block in a zero array of the full layer shape: the masked full-size view export reads."""
    padded = []
    for block, shape in zip(blocks, full):
        out = np.zeros(shape, dtype=block.dtype)
        out[block_slices(block.shape)] = block
        padded.append(out)
    return padded
