"""Raw uint8 pixels → model inputs: the exact float32 operations of each dataset, defined once.

The training loaders (:mod:`.cifar10`, :mod:`.mnist`) apply these recipes, ``edge-mcepl export``
copies them into every manifest, and :func:`edge_mcepl.runtime.preprocess_uint8` applies the
manifest's copy on a device. One definition matters because formulas that are equal on paper are
not the same float computation: CIFAR-10's ``(p/255 − 0.5)/0.5`` differs from the
``p·float32(2/255) − 1`` computed here in the last bit for 111 of the 256 byte values, and an
int8 model quantises its input at fixed steps, so one bit can change a prediction. numpy only (no
torch): the device runtime imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

# How a device must read the manifest's steps; one IEEE operation per step is what numpy does here.
RULE = ("x = float32(p) for every uint8 value p (exact); then, for each step in order, x = x <op> c as one IEEE 754 "
        "binary32 operation rounded to nearest-even (mul: x·c, sub: x − c, div: x / c, a true division and not a "
        "multiplication by 1/c), with no float64 intermediates and no fused multiply-add. c is the float32 whose bit "
        "pattern is float32_hex; value is the same number as a decimal. Every channel and pixel is treated alike.")
NO_RAW_RULE = ("none: inputs are already float32. The model was trained on synthetic images generated as float32 in "
               "memory (edge_mcepl/data/synthetic.py, roughly zero mean and unit variance); they have no uint8 form.")

_UFUNCS = {"mul": np.multiply, "sub": np.subtract, "div": np.divide}


@dataclass(frozen=True)
class Step:
    """``x = x <op> value`` in float32; ``value`` is held as the float32 the operation uses."""

    op: str
    value: np.float32

    def __post_init__(self) -> None:
        if self.op not in _UFUNCS:
            raise UserError(f"preprocessing step {self.op!r}: expected one of {', '.join(_UFUNCS)}")

    def to_dict(self) -> dict:
        return {"op": self.op, "float32_hex": f"0x{int(self.value.view(np.uint32)):08x}", "value": float(self.value)}

    @classmethod
    def from_dict(cls, entry: Mapping) -> Step:
        """The step a manifest describes; its bit pattern, not the decimal, is authoritative."""
        try:
            bits = np.uint32(int(entry["float32_hex"], 16))
            return cls(entry["op"], bits.view(np.float32))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise UserError(f"preprocessing step {dict(entry)!r} is malformed ({exc})") from None


@dataclass(frozen=True)
class Recipe:
    dataset: str
    raw: str | None  # where the uint8 pixels come from and in which order; None: there are none
    steps: tuple[Step, ...]


RECIPES = {r.dataset: r for r in (
    Recipe("cifar10", "CIFAR-10 python batches: each 3,072-byte row is one image, 1,024 red then 1,024 green then "
                      "1,024 blue values, each 32×32 row-major (C×H×W, RGB; an H×W×3 RGB image is the same values "
                      "transposed)",
           (Step("mul", np.float32(2.0 / 255.0)), Step("sub", np.float32(1.0)))),
    Recipe("mnist", "MNIST idx images: 28×28 bytes row-major, one channel, 0 = background, 255 = ink (light digits "
                    "on a dark background)",
           (Step("div", np.float32(255.0)), Step("sub", np.float32(0.1307)), Step("div", np.float32(0.3081)))),
    Recipe("synthetic", None, ()),
)}


def apply_steps(pixels: np.ndarray, steps: Sequence[Step]) -> np.ndarray:
    """A C-contiguous float32 copy of uint8 ``pixels`` (any shape) with ``steps`` applied in order, per :data:`RULE`."""
    if pixels.dtype != np.uint8:
        raise UserError(f"preprocessing takes raw uint8 pixels, got dtype {pixels.dtype}")
    x = np.array(pixels, dtype=np.float32, order="C")
    for step in steps:
        _UFUNCS[step.op](x, step.value, out=x)
    return x


def manifest_entry(dataset: str, input_shape: Sequence[int]) -> dict:
    """The manifest's ``preprocessing`` object for a model trained on ``dataset`` with inputs ``input_shape``."""
    recipe = RECIPES[dataset]
    return {"dataset": dataset,
            "input": {"dtype": "float32", "layout": "NCHW", "shape": [int(d) for d in input_shape]},
            "raw": None if recipe.raw is None else {"dtype": "uint8", "source": recipe.raw},
            "steps": [s.to_dict() for s in recipe.steps],
            "rule": RULE if recipe.raw is not None else NO_RAW_RULE}
