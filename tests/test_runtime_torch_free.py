"""`edge-mcepl infer` and `bench-infer` run with onnxruntime + numpy only: torch is never imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from edge_mcepl.data.preprocessing import manifest_entry
from edge_mcepl.export.graph import trace_ops
from edge_mcepl.export.onnx_export import save_model, to_onnx
from edge_mcepl.export.prune import prune_network
from edge_mcepl.nn.weights import generate_fixed_weights
from edge_mcepl.nn.zoo import build_model

ROOT = Path(__file__).resolve().parents[1]  # the checkout under test, whatever edge_mcepl is installed
# Runs in a fresh interpreter where importing torch raises, and checks sys.modules at the end too.
SCRIPT = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch must not be imported on the inference path")
sys.meta_path.insert(0, NoTorch())
from edge_mcepl.cli import main
model, inputs, preds, raw, frames = sys.argv[1:6]
assert main(["infer", model, inputs, "--out", preds]) == 0
assert main(["infer", model, raw, "--raw-uint8"]) == 0  # the manifest's preprocessing, beside the model
assert main(["infer", model, frames]) == 0  # image files, read with Pillow
assert main(["bench-infer", model, "--batch", "1", "--batch", "4", "--seconds", "0.05"]) == 0
assert "torch" not in sys.modules, "torch was imported"
print("TORCH-FREE OK")
"""


def test_infer_and_bench_never_import_torch(tmp_path):
    template = build_model("small-cnn")
    fixed = generate_fixed_weights(template, "small-cnn", 2)
    masks = {name: np.ones(tuple(layer.weight.shape), np.float32) for name, layer in template.masked_layers()}
    masks["conv2"][:10] = 0
    weights = {k: v.numpy() for k, v in fixed.tensors.items()}
    kwargs = dict(input_shape=(1, 28, 28), num_classes=10, elu_logits=True)
    save_model(to_onnx(prune_network(trace_ops(template), weights, masks, **kwargs)), tmp_path / "model.onnx")
    save_model(to_onnx(prune_network(trace_ops(template), weights, masks, remove=False, **kwargs)),
               tmp_path / "dense.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((6, 1, 28, 28)).astype(np.float32))
    np.save(tmp_path / "raw.npy", np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1)).astype(np.uint8))
    (tmp_path / "frames").mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "frames" / "frame.jpg")
    (tmp_path / "manifest.json").write_text(json.dumps({"preprocessing": manifest_entry("mnist", (1, 28, 28))}))

    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "model.onnx"), str(tmp_path / "x.npy"),
                             str(tmp_path / "pred.npy"), str(tmp_path / "raw.npy"), str(tmp_path / "frames")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TORCH-FREE OK" in result.stdout
    assert "vs dense" in result.stdout  # the sibling dense.onnx was found and compared
    assert np.load(tmp_path / "pred.npy").shape == (6,)


# A machine where torch is not installed (`pip install edge-mcepl`, the runtime only): a sitecustomize
# makes every import of torch fail as a missing module does.
NOT_INSTALLED = """
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NotInstalled())
"""


def without_torch(tmp_path, *args: str, cli: bool = True) -> subprocess.CompletedProcess:
    """``edge-mcepl ARGS`` (``cli=False``: ``python ARGS``) in a fresh interpreter that has no torch."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NOT_INSTALLED)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{site}:{ROOT}"}
    return subprocess.run([sys.executable, *(["-m", "edge_mcepl.cli"] if cli else []), *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)


def test_without_torch_the_cli_runs_and_a_training_command_names_its_pip_extra(tmp_path):
    stand_in = without_torch(tmp_path, "-c", "import torch", cli=False)
    assert "ModuleNotFoundError: No module named 'torch'" in stand_in.stderr  # as on a runtime-only install
    helped = without_torch(tmp_path, "--help")
    assert helped.returncode == 0 and "bench-infer" in helped.stdout, helped.stderr
    assert without_torch(tmp_path, "--version").stdout.startswith("edge-mcepl ")
    assert without_torch(tmp_path, "infer", "--help").returncode == 0
    for argv, extra in [(["simulate", "examples/demo.yaml"], "lab"), (["join", "--bundle", "agent-0.yaml"], "lab"),
                        (["export", "runs/none"], "all")]:
        result = without_torch(tmp_path, *argv)
        assert result.returncode == 2, result.stderr
        assert result.stderr == (f"edge-mcepl: error: {argv[0]} needs torch, which is not installed: "
                                 f"pip install 'edge-mcepl[{extra}]'\n")
