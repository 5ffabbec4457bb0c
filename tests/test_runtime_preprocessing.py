"""The manifest's preprocessing recipe, applied by the torch-free runtime, gives the training inputs bit for bit.

Every byte value 0…255 is checked in every channel, because the obvious formulas round differently
for some of them (111 of 256 for CIFAR-10), and an exported model fed raw uint8 images through the
recipe must predict what the masked torch model predicts on the loader's images.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
import yaml

from edge_mcepl import runtime
from edge_mcepl.cli import main
from edge_mcepl.config import DataConfig
from edge_mcepl.data.cifar10 import load_cifar10
from edge_mcepl.data.mnist import load_mnist
from edge_mcepl.data.preprocessing import manifest_entry
from edge_mcepl.errors import UserError
from edge_mcepl.export.manifest import preprocessing_entry, to_json
from edge_mcepl.export.run import load_agent_masks, load_run, masked_zoo_model, regenerate_weights
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def every_byte(channels: int, pixels: int) -> np.ndarray:
    """One uint8 image C×pixels in which every channel holds every value 0…255 (offset per channel)."""
    return ((np.arange(pixels)[None, :] + 85 * np.arange(channels)[:, None]) % 256).astype(np.uint8)


def write_cifar(folder, image: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": image.reshape(1, 3072), b"labels": [0]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def write_mnist(folder, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        for suffix, magic, array in (("images-idx3", 0x803, images), ("labels-idx1", 0x801, labels)):
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (folder / f"{prefix}-{suffix}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())


def manifest_copy(dataset: str, shape: tuple[int, int, int]) -> dict:
    """The preprocessing object as a device reads it: through the manifest's JSON text."""
    return json.loads(to_json({"preprocessing": manifest_entry(dataset, shape)}))["preprocessing"]


def bits(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def test_cifar10_recipe_is_the_loader_bit_for_bit(tmp_path):
    raw = every_byte(3, 1024).reshape(3, 32, 32)
    write_cifar(tmp_path / "cifar-10-batches-py", raw)
    _, test = load_cifar10(tmp_path)
    recipe = manifest_copy("cifar10", (3, 32, 32))
    assert recipe["steps"] == [{"op": "mul", "float32_hex": "0x3c008081", "value": 0.007843137718737125},
                               {"op": "sub", "float32_hex": "0x3f800000", "value": 1.0}]

    got = runtime.preprocess_uint8(raw[None], recipe)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(bits(got), bits(test.images.numpy()))
    channels_last = runtime.preprocess_uint8(raw.transpose(1, 2, 0), recipe)  # one H×W×C camera image
    assert np.array_equal(bits(channels_last), bits(got))
    # The loader computes what it did before it used the recipe, and the textbook formula is not it.
    before = torch.from_numpy(raw).to(torch.float32).mul_(2.0 / 255.0).sub_(1.0)
    assert np.array_equal(bits(before.numpy()), bits(got[0]))
    by_value = np.zeros(256, np.uint32)
    by_value[raw.ravel()] = bits(got).ravel()
    values = np.arange(256, dtype=np.float32)
    textbook = (values / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    assert int(np.sum(bits(textbook) != by_value)) == 111


def test_mnist_recipe_is_the_loader_bit_for_bit(tmp_path):
    raw = every_byte(1, 784).reshape(1, 1, 28, 28)
    write_mnist(tmp_path, raw[:, 0], np.zeros(1))
    _, test = load_mnist(tmp_path)
    recipe = manifest_copy("mnist", (1, 28, 28))
    assert [s["op"] for s in recipe["steps"]] == ["div", "sub", "div"]
    got = runtime.preprocess_uint8(raw, recipe)
    assert np.array_equal(bits(got), bits(test.images.numpy()))
    before = torch.from_numpy(raw).to(torch.float32).div_(255.0).sub_(0.1307).div_(0.3081)
    assert np.array_equal(bits(before.numpy()), bits(got))


def test_a_config_that_allowed_the_synthetic_fallback_says_the_recipe_may_not_apply():
    assert "caveat" not in preprocessing_entry(DataConfig(dataset="cifar10"), (3, 32, 32))
    entry = preprocessing_entry(DataConfig(dataset="cifar10", fallback_to_synthetic=True), (3, 32, 32))
    assert entry["steps"] and "synthetic" in entry["caveat"]


def test_synthetic_and_wrong_inputs_are_one_line_errors():
    with pytest.raises(UserError, match="synthetic.*already float32"):
        runtime.preprocess_uint8(np.zeros((1, 1, 28, 28), np.uint8), manifest_copy("synthetic", (1, 28, 28)))
    mnist = manifest_copy("mnist", (1, 28, 28))
    with pytest.raises(UserError, match="uint8"):
        runtime.preprocess_uint8(np.zeros((1, 1, 28, 28), np.float32), mnist)
    with pytest.raises(UserError, match=r"N×1×28×28 or N×28×28×1"):
        runtime.preprocess_uint8(np.zeros((2, 28, 27), np.uint8), mnist)


def test_exported_model_on_raw_uint8_predicts_like_the_torch_reference(tmp_path, capsys):
    config = tiny_lab_config(**{"agents": 2, "rounds": 2, "retention.conv": 0.1, "algorithm.preset": "structured",
                                "algorithm.min_kept_per_filter": 1})
    run_dir = tmp_path / "run"
    Simulator(config, log=lambda message: None).run(run_dir, progress=False)
    # The same masks, read as a model of MNIST: what matters here is the input path, not accuracy.
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (64, 28, 28)).astype(np.uint8)
    write_mnist(tmp_path / "mnist", raw, rng.integers(0, 10, 64))
    raw_config = yaml.safe_load((run_dir / "config.yaml").read_text())
    raw_config["data"].update(dataset="mnist", data_dir=str(tmp_path / "mnist"))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw_config))
    assert main(["export", str(run_dir), "--agent", "0", "--out", str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "agent_000"
    assert json.loads((folder / "manifest.json").read_text())["preprocessing"]["dataset"] == "mnist"

    run = load_run(run_dir)
    template, fixed = regenerate_weights(run)
    reference = masked_zoo_model(run, fixed, load_agent_masks(run, 0, template))
    _, loaded = load_mnist(tmp_path / "mnist")
    with torch.no_grad():
        want = reference.logits(loaded.images).numpy()

    np.save(tmp_path / "raw.npy", raw[..., None])  # N×H×W×C, as a camera delivers them
    assert main(["infer", str(folder / "model.onnx"), str(tmp_path / "raw.npy"), "--raw-uint8",
                 "--out", str(tmp_path / "pred.npy"), "--logits-out", str(tmp_path / "logits.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "pred.npy"), want.argmax(1))
    assert np.abs(np.load(tmp_path / "logits.npy") - want).max() <= 1e-4

    capsys.readouterr()
    assert main(["infer", str(folder / "model.onnx"), str(tmp_path / "raw.npy")]) == 2  # raw bytes, no flag
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "uint8" in err[0] and "--raw-uint8" in err[0]
