"""Optional int8 model via onnxruntime's quantization tools, measured against the fp32 export.

Static quantization: int8 per-channel weights, uint8 activations whose ranges are calibrated on
the agent's own train images (its real input distribution) — or, when the data is not available,
on the verification noise, which the manifest then says. The operator ("QOperator") format is
used because it measured slightly faster than QDQ for these networks in onnxruntime on a CPU.
The int8 model is not held to the fp32 tolerance: the manifest records how far it moved
(max |Δlogit|, argmax agreement), its accuracy and its latency next to the fp32 model's.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

METHOD = "static, QOperator format, int8 per-channel weights, uint8 activations"


@contextmanager
def _quiet():
    """onnxruntime.quantization logs advice through the root logger; keep the CLI output clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray, batch: int = 32) -> None:
    """Write the int8 version of ``src`` to ``dst``, calibrated on ``calibration`` (N×C×H×W float32)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{"input": np.ascontiguousarray(calibration[i:i + batch], dtype=np.float32)}
                                  for i in range(0, len(calibration), batch)])

        def get_next(self):
            return next(self._batches, None)

    with _quiet(), tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))
        quantize_static(prepared, dst, _Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
