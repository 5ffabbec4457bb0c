"""Dead filters and rows found and physically removed: the masked network as a smaller dense one.

The agent's effective model is ``v = w ⊙ m``. Walking the op chain in order, this module keeps
track of which original channels (or features, after ``flatten``) are still present and what
constant value each removed one carries, and rebuilds every layer with only what matters:

- **conv** (no bias): input channels that were removed upstream are dropped from the weight; an
  output filter whose remaining weights are all zero outputs exactly 0 everywhere and is removed
  (constant 0). That also catches filters that only read dead channels (dead by cascade).
- **linear** (fixed bias): removed input features with a non-zero constant ``c`` are folded into
  the bias (``b += v[:, removed] @ c``); an output row whose remaining weights are all zero
  outputs its bias ``b_o`` for every input, so it is removed and carries the constant ``b_o``.
  The last masked layer keeps every output: those are the logits.
- **ELU / ReLU** map the constants (ELU(0) = 0); **max pooling** keeps them (the max over a window
  of one constant is that constant; padding is −∞); **flatten** maps channel c to the features
  ``c·H·W … c·H·W + H·W − 1``, with H×W the spatial size at that point.
- **LRN** mixes neighbouring channels: ``d_c = k + α/n · Σ_{j ∈ W(c)} x_j²`` with the window W(c)
  over *original* channel indices. A removed channel is 0, so it adds nothing to any window, but
  renumbering the survivors would pull other channels into the windows (the stock LRN of the
  pruned tensor is wrong). The pruned LRN keeps the original window membership with an explicit
  C'×C' 0/1 window matrix ``M[c', j'] = 1 ⇔ orig(j') ∈ W(orig(c'))``: ``d = k + α/n · M·x²``
  over channels, a 1×1 convolution in ONNX. (Measured in onnxruntime, that is faster than
  gathering the shifted neighbours, and ONNX's own ``LRN`` op cannot be used at all: it centres
  even-sized windows the other way and onnxruntime only implements odd sizes.)

Every step is exact up to float rounding (the bias folding rounds once), so the pruned network
computes the same function as the masked dense one; :mod:`.verify` checks it on every export.
A layer left with no live filter at all makes the whole network constant and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from . import graph as g


@dataclass(frozen=True, eq=False)
class PConv:
    layer: str
    weight: np.ndarray  # O'×I'×k×k float32
    stride: int
    padding: int


@dataclass(frozen=True, eq=False)
class PLinear:
    layer: str
    weight: np.ndarray  # O'×I' float32
    bias: np.ndarray  # O' float32


@dataclass(frozen=True, eq=False)
class PLRN:
    """LRN over the surviving channels with the original channels' windows (see module doc)."""

    size: int
    alpha: float
    beta: float
    k: float
    window: np.ndarray  # C'×C' float32 0/1: window[c', j'] = 1 ⇔ channel j' is in channel c''s window


PrunedOp = PConv | PLinear | PLRN | g.Elu | g.Relu | g.MaxPool | g.Flatten


@dataclass(frozen=True)
class LayerReport:
    """What pruning did to one masked layer (one row of the manifest's layer table)."""

    name: str
    kind: str  # "conv" | "linear"
    filters: int  # output filters (conv) / rows (linear) of the full layer
    filters_kept: int
    inputs: int  # input channels / columns of the full layer
    inputs_kept: int
    params: int  # weights (+ bias) of the full layer
    params_kept: int  # weights (+ bias) of the pruned layer
    mask_ones: int  # ones in the mask (those reading only removed channels go with them)
    macs: int  # multiply-accumulates per input image, full layer
    macs_kept: int  # … pruned layer
    removed_filters: tuple[int, ...]  # original indices

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["removed_filters"] = list(self.removed_filters)
        return d


@dataclass(frozen=True)
class LRNReport:
    """What one exported LRN's window sum stores and computes: a C×C 1×1 convolution over H×W.

    The window matrix is stored and multiplied densely, zeros included (see module doc), so its
    C² entries are parameters of the file and C²·H·W multiply-accumulates per image — about 14 %
    of the dense alexnet-cifar graph's MACs, too much to leave out of the reductions reported.
    """

    after: str  # the masked layer whose activations it normalises
    channels: int  # of the full layer
    channels_kept: int
    hw: tuple[int, int]

    @property
    def params(self) -> int:
        return self.channels ** 2

    @property
    def params_kept(self) -> int:
        return self.channels_kept ** 2

    @property
    def macs(self) -> int:
        return self.params * self.hw[0] * self.hw[1]

    @property
    def macs_kept(self) -> int:
        return self.params_kept * self.hw[0] * self.hw[1]

    def to_dict(self) -> dict:
        return {"after": self.after, "channels": self.channels, "channels_kept": self.channels_kept,
                "hw": list(self.hw), "params": self.params, "params_kept": self.params_kept, "macs": self.macs,
                "macs_kept": self.macs_kept}


@dataclass(frozen=True, eq=False)
class PrunedNetwork:
    """The pruned ops, with the cost of every op that holds weights (masked layers and LRN windows)."""

    ops: list[PrunedOp]
    input_shape: tuple[int, int, int]
    num_classes: int
    elu_logits: bool
    layers: list[LayerReport] = field(default_factory=list)
    lrns: list[LRNReport] = field(default_factory=list)

    @property
    def costs(self) -> tuple[LayerReport | LRNReport, ...]:
        """Every op of the graph that holds weights: what parameters and MACs are summed over."""
        return (*self.layers, *self.lrns)

    @property
    def params(self) -> int:
        return sum(r.params_kept for r in self.costs)

    @property
    def dense_params(self) -> int:
        return sum(r.params for r in self.costs)

    @property
    def macs(self) -> int:
        return sum(r.macs_kept for r in self.costs)

    @property
    def dense_macs(self) -> int:
        return sum(r.macs for r in self.costs)

    @property
    def filters_removed(self) -> int:
        return sum(r.filters - r.filters_kept for r in self.layers)


@dataclass
class _State:
    """The tensor between two ops: which original channels/features survive, constants of the rest."""

    kept: np.ndarray  # sorted original indices present in the pruned tensor
    const: np.ndarray  # float64, one per original index; meaningful only where removed
    hw: tuple[int, int] | None  # spatial size while 4-D, None once flattened

    @property
    def total(self) -> int:
        return self.const.size

    def removed(self) -> np.ndarray:
        keep = np.zeros(self.total, dtype=bool)
        keep[self.kept] = True
        return np.flatnonzero(~keep)


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def lrn_window_matrix(kept: np.ndarray, size: int) -> np.ndarray:
    """``M[c', j'] = 1`` iff original channel ``kept[j']`` lies in the LRN window of ``kept[c']``.

    PyTorch's window of channel c is [c − ⌊n/2⌋, c + ⌊(n−1)/2⌋] (``F.local_response_norm``);
    channels outside the tensor, and removed ones, are zero and simply have no column.
    """
    offset = kept[None, :] - kept[:, None]
    return ((offset >= -(size // 2)) & (offset <= (size - 1) // 2)).astype(np.float32)


def _elu(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def prune_network(
    ops: list[g.Op],
    weights: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    elu_logits: bool,
    remove: bool = True,
    align: int = 1,
) -> PrunedNetwork:
    """The network ``ops`` with ``v = w ⊙ m`` and every dead filter/row removed.

    ``weights`` maps ``"<layer>.weight"`` (and ``"<layer>.bias"`` for linear layers) to arrays;
    ``masks`` maps ``"<layer>"`` to its 0/1 mask. ``remove=False`` keeps every filter: the dense
    network with the same masked weights (zeros present), the baseline for size and speed.

    ``align``: a layer is only pruned when that leaves fewer filters than its full count rounded
    to blocks of ``align``: onnxruntime's CPU convolutions work in blocks of 8 channels (AVX2;
    16 with AVX-512), and a layer cut from 32 to 31 filters measured ≈ 12 % *slower* than the
    full 32. Keeping a dead filter is exact (it outputs 0; a kept dead row outputs its bias).
    """
    channels, height, width = input_shape
    state = _State(np.arange(channels), np.zeros(channels), (height, width))
    masked_names = [op.layer for op in ops if isinstance(op, (g.Conv, g.Linear))]
    last = masked_names[-1]
    out: list[PrunedOp] = []
    reports: list[LayerReport] = []
    lrns: list[LRNReport] = []
    for op in ops:
        if isinstance(op, (g.Conv, g.Linear)):
            w = np.asarray(weights[f"{op.layer}.weight"], dtype=np.float32)
            m = np.asarray(masks[op.layer])
            if m.shape != w.shape:
                raise UserError(f"mask of layer {op.layer} has shape {m.shape}, the weights {w.shape}")
            v = w * m.astype(np.float32)
            ones = int(np.count_nonzero(m))
            pruned: PConv | PLinear
            if isinstance(op, g.Conv):
                pruned, state, report = _prune_conv(op, v, ones, state, remove and op.layer != last, align)
            else:
                bias = np.asarray(weights[f"{op.layer}.bias"], dtype=np.float32)
                pruned, state, report = _prune_linear(op, v, bias, ones, state, remove and op.layer != last, align)
            out.append(pruned)
            reports.append(report)
        elif isinstance(op, g.Elu):
            state.const = _elu(state.const, op.alpha)
            out.append(op)
        elif isinstance(op, g.Relu):
            state.const = np.maximum(state.const, 0.0)
            out.append(op)
        elif isinstance(op, g.LRN):
            _require_zero_removed(state, "local response norm")
            out.append(PLRN(op.size, op.alpha, op.beta, op.k, lrn_window_matrix(state.kept, op.size)))
            lrns.append(LRNReport(reports[-1].name if reports else "input", state.total, len(state.kept),
                                  _spatial(state, "local response norm")))
        elif isinstance(op, g.MaxPool):
            h, w_ = _spatial(state, "max pooling")
            state.hw = (_out_size(h, op.kernel, op.stride, op.padding), _out_size(w_, op.kernel, op.stride, op.padding))
            out.append(op)
        elif isinstance(op, g.Flatten):
            h, w_ = _spatial(state, "flatten")
            area = h * w_
            state = _State((state.kept[:, None] * area + np.arange(area)[None, :]).reshape(-1),
                           np.repeat(state.const, area), None)
            out.append(op)
        else:  # pragma: no cover - graph.trace_ops only produces the ops above
            raise TypeError(f"unknown op {op!r}")
    if state.hw is not None or state.total != num_classes:
        raise UserError(f"export: the network ends with {state.total} outputs, expected {num_classes} logits")
    return PrunedNetwork(out, input_shape, num_classes, elu_logits, reports, lrns)


def _spatial(state: _State, what: str) -> tuple[int, int]:
    if state.hw is None:
        raise UserError(f"export: {what} after flatten is not supported")
    return state.hw


def _require_zero_removed(state: _State, what: str) -> None:
    removed = state.removed()
    if removed.size and np.any(state.const[removed] != 0):
        raise UserError(f"export: cannot remove channels with a non-zero constant before a {what}")


def _alive_rows(v: np.ndarray, name: str, kind: str, remove: bool, align: int = 1) -> np.ndarray:
    alive = np.flatnonzero(np.any(v.reshape(v.shape[0], -1) != 0, axis=1))
    if alive.size == 0:
        unit = "filter" if kind == "conv" else "row"
        raise UserError(f"layer {name}: every {unit} is dead (0 of {v.shape[0]} live) — this mask makes the "
                        f"network output a constant; nothing worth exporting")
    blocks = -(-alive.size // max(align, 1)) * max(align, 1)
    return alive if remove and blocks < v.shape[0] else np.arange(v.shape[0])


def _prune_conv(op: g.Conv, v: np.ndarray, ones: int, state: _State, remove: bool,
                align: int) -> tuple[PConv, _State, LayerReport]:
    h, w_ = _spatial(state, f"conv {op.layer}")
    if v.shape[1] != state.total:
        raise UserError(f"export: conv {op.layer} expects {v.shape[1]} input channels, gets {state.total}")
    _require_zero_removed(state, f"conv ({op.layer})")
    v_in = v[:, state.kept]
    alive = _alive_rows(v_in, op.layer, "conv", remove, align)
    weight = np.ascontiguousarray(v_in[alive])
    out_hw = (_out_size(h, v.shape[2], op.stride, op.padding), _out_size(w_, v.shape[3], op.stride, op.padding))
    area = out_hw[0] * out_hw[1]
    report = LayerReport(
        op.layer, "conv", v.shape[0], len(alive), v.shape[1], len(state.kept),
        params=int(v.size), params_kept=int(weight.size), mask_ones=ones,
        macs=int(v.size) * area, macs_kept=int(weight.size) * area,
        removed_filters=tuple(int(i) for i in np.setdiff1d(np.arange(v.shape[0]), alive)))
    new_state = _State(alive, np.zeros(v.shape[0]), out_hw)
    return PConv(op.layer, weight, op.stride, op.padding), new_state, report


def _prune_linear(op: g.Linear, v: np.ndarray, bias: np.ndarray, ones: int, state: _State,
                  remove: bool, align: int) -> tuple[PLinear, _State, LayerReport]:
    if state.hw is not None:
        raise UserError(f"export: linear {op.layer} needs a flatten before it")
    if v.shape[1] != state.total:
        raise UserError(f"export: linear {op.layer} expects {v.shape[1]} inputs, gets {state.total}")
    removed = state.removed()
    folded = bias.astype(np.float64)
    if removed.size:
        folded = folded + v[:, removed].astype(np.float64) @ state.const[removed]
    v_in = v[:, state.kept]
    alive = _alive_rows(v_in, op.layer, "linear", remove, align)
    weight = np.ascontiguousarray(v_in[alive])
    new_bias = folded[alive].astype(np.float32)
    report = LayerReport(
        op.layer, "linear", v.shape[0], len(alive), v.shape[1], len(state.kept),
        params=int(v.size + bias.size), params_kept=int(weight.size + new_bias.size), mask_ones=ones,
        macs=int(v.size), macs_kept=int(weight.size),
        removed_filters=tuple(int(i) for i in np.setdiff1d(np.arange(v.shape[0]), alive)))
    # A dead row outputs its (folded) bias whatever the input: that constant travels on.
    new_state = _State(alive, folded.copy(), None)
    return PLinear(op.layer, weight, new_bias), new_state, report
