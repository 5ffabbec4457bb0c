"""What a structure costs once exported: multiply-adds and parameters, counted by the exporter itself.

The retention policy (:mod:`edge_mcepl.profiles`) must size a device's model by what the exported
ONNX file will really compute — LRN windows included, channel alignment included — not by the
share of weights a mask keeps (a mask that removes no whole filter saves no time). So it prunes a
stand-in of the structure with the same code ``edge-mcepl export`` runs and reads the same totals
its manifest reports. The stand-in keeps every weight inside the block (all ones): the exported
layers store their kept filters densely, so a mask's zeros inside the block change nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from ..nn.layers import MaskedLinear
from ..nn.width import pad_to_full, width_shapes
from ..nn.zoo import build_model
from .graph import trace_ops
from .prune import prune_network

ALIGN = 8  # the exporter's default channel alignment (onnxruntime's CPU convolutions work in blocks of 8)


@dataclass(frozen=True)
class ExportedCost:
    macs: int  # per image, as the manifest's macs.pruned
    params: int  # stored parameters (weights, biases, LRN window matrices), as the manifest's params.pruned
    dense_macs: int  # the full network's, as the manifest's macs.dense

    @property
    def mac_fraction(self) -> float:
        return self.macs / self.dense_macs

    @property
    def bytes_fp32(self) -> int:
        return 4 * self.params


@cache
def exported_cost(model_name: str, width: float, num_classes: int = 10, align: int = ALIGN) -> ExportedCost:
    """The exported cost of ``model_name`` at ordered width ``width`` (1: every filter kept)."""
    model = build_model(model_name, num_classes)
    full = model.layer_shapes()
    blocks = [np.ones(shape, dtype=np.float32) for shape in width_shapes(full, width)]
    masks = {name: mask for (name, _), mask in zip(model.masked_layers(), pad_to_full(blocks, full))}
    weights: dict[str, np.ndarray] = {}
    for name, layer in model.masked_layers():
        weights[f"{name}.weight"] = np.ones(tuple(layer.weight.shape), dtype=np.float32)  # any nonzero value
        if isinstance(layer, MaskedLinear):
            weights[f"{name}.bias"] = np.zeros(tuple(layer.bias.shape), dtype=np.float32)
    net = prune_network(trace_ops(model, model_name), weights, masks, input_shape=model.input_shape,
                        num_classes=num_classes, elu_logits=model.elu_logits, align=align)
    return ExportedCost(macs=net.macs, params=net.params, dense_macs=net.dense_macs)
