"""`infer` on real inputs: image files and folders through the manifest's preprocessing, and every bad
argument (inputs, labels, output paths) refused in one line before any work starts (issue 11, items 4 and 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from edge_mcepl import runtime
from edge_mcepl.cli import main
from edge_mcepl.data.preprocessing import manifest_entry
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config

BILINEAR = Image.Resampling.BILINEAR


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A tiny run (``root/run``) exported as an MNIST model (``root/out/agent_000``), so raw pixels have a recipe."""
    root = tmp_path_factory.mktemp("infer")
    config = tiny_lab_config(**{"agents": 2, "rounds": 1, "retention.conv": 0.1})
    Simulator(config, log=lambda message: None).run(root / "run", progress=False)
    raw = yaml.safe_load((root / "run" / "config.yaml").read_text())
    raw["data"].update(dataset="mnist", data_dir=str(root / "no-mnist-here"))  # accuracy skipped: not needed
    (root / "run" / "config.yaml").write_text(yaml.safe_dump(raw))
    assert main(["export", str(root / "run"), "--agent", "0", "--out", str(root / "out"), "--no-dense"]) == 0
    return root


@pytest.fixture
def model(root) -> str:
    return str(root / "out" / "agent_000" / "model.onnx")


def one_line_error(capsys, *parts: str) -> None:
    """Exit 2 was returned; stderr is one line naming ``parts``; nothing was printed: no work was done."""
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1, (out, err)
    for part in parts:
        assert part in lines[0]


def test_a_folder_and_image_files_are_read_like_the_training_images(model, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    for i, pixels in enumerate(gray):  # the model's size and channels: used as they are, bit for bit
        Image.fromarray(pixels).save(frames / f"frame_{i:02d}.png")
    Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(frames / "b.jpg", quality=95)
    (frames / ".DS_Store").write_bytes(b"\0\1")  # hidden files are skipped
    # What README's Export section says infer does to other images: grayscale, Pillow bilinear to 28×28.
    colour = np.asarray(Image.open(frames / "b.jpg").convert("L").resize((28, 28), BILINEAR))
    np.save(tmp_path / "raw.npy", np.stack([colour, *gray])[:, None])
    assert main(["infer", model, str(tmp_path / "raw.npy"), "--raw-uint8", "--logits-out",
                 str(tmp_path / "want.npy")]) == 0
    want = np.load(tmp_path / "want.npy")
    capsys.readouterr()

    np.save(tmp_path / "labels.npy", want.argmax(1))  # labels in the same (file name) order
    assert main(["infer", model, str(frames), "--logits-out", str(tmp_path / "got.npy"),
                 "--labels", str(tmp_path / "labels.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = ["b.jpg", "frame_00.png", "frame_01.png", "frame_02.png"]  # sorted by name
    assert lines[:4] == [f"{frames / name}\t{int(c)}" for name, c in zip(names, want.argmax(1))]
    assert lines[4].startswith("4 inputs;") and lines[5] == "accuracy 1.0000 on 4 inputs"
    assert np.array_equal(np.load(tmp_path / "got.npy"), want)

    # Files are taken in the order given, and may be mixed with folders.
    assert main(["infer", model, str(frames / "frame_01.png"), str(frames)]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()[:2]] == [
        str(frames / "frame_01.png"), str(frames / "b.jpg")]


def test_rgb_images_are_converted_rotated_upright_and_resized(tmp_path):
    source = Image.fromarray(np.random.default_rng(1).integers(0, 256, (10, 20, 4), dtype=np.uint8), "RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: the camera was turned; displayed rotated 90° clockwise
    source.save(tmp_path / "portrait.png", exif=exif)
    recipe = manifest_entry("cifar10", (3, 32, 32))
    got = runtime.load_images([tmp_path / "portrait.png"], recipe)
    upright = source.transpose(Image.Transpose.ROTATE_270).convert("RGB").resize((32, 32), BILINEAR)
    assert np.array_equal(got, runtime.preprocess_uint8(np.asarray(upright)[None], recipe))


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"not an image", "not a readable image"),
    ("cut.jpg", None, "not a readable image"),
    ("deep.png", "16-bit", "convert it to 8 bits"),
])
def test_an_unreadable_file_in_a_folder_is_one_line_naming_it(model, tmp_path, capsys, name, content, message):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "a.png")
    if content == "16-bit":
        Image.fromarray(np.full((28, 28), 1000, np.uint16)).save(folder / name)
    elif content is None:
        Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "whole.jpg")
        (folder / name).write_bytes((tmp_path / "whole.jpg").read_bytes()[:200])
    else:
        (folder / name).write_bytes(content)
    assert main(["infer", model, str(folder)]) == 2
    one_line_error(capsys, str(folder / name), message)


def test_images_need_a_model_trained_on_real_pixels(tmp_path):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(runtime.UserError, match="synthetic data, there is no uint8 preprocessing"):
        runtime.load_images([tmp_path / "a.png"], manifest_entry("synthetic", (1, 28, 28)))


@pytest.mark.parametrize("values, message", [
    (np.full((2, 1, 28, 28), np.nan, np.float32), "NaN or infinite"),
    (np.where(np.arange(2 * 784).reshape(2, 1, 28, 28) == 900, np.inf, 0.0), "the first in input 1"),
    (np.zeros((0, 1, 28, 28), np.float32), "no inputs"),
])
def test_nan_inf_and_empty_inputs_are_refused(model, tmp_path, capsys, values, message):
    np.save(tmp_path / "x.npy", values)
    assert main(["infer", model, str(tmp_path / "x.npy")]) == 2
    one_line_error(capsys, str(tmp_path / "x.npy"), message)


@pytest.mark.parametrize("labels, message", [
    (None, "file not found"),
    (b"not an array", "not a readable .npy array"),
    (np.array([0.0, 1.0, 2.0]), "must be integers"),
    (np.array([0, 10, 1]), "label 10 (input 1) is not one of the model's classes [0, 10)"),
    (np.array([0, 1, -1]), "label -1 (input 2)"),
    (np.array([0, 1]), "2 labels for 3 inputs"),
])
def test_bad_labels_are_refused_before_any_prediction(model, tmp_path, capsys, labels, message):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32))
    path = tmp_path / "y.npy"
    if isinstance(labels, bytes):
        path.write_bytes(labels)
    elif labels is not None:
        np.save(path, labels)
    assert main(["infer", model, str(tmp_path / "x.npy"), "--labels", str(path)]) == 2
    one_line_error(capsys, f"--labels {path}", message)


@pytest.mark.parametrize("argv, option, culprit", [
    (["infer", "{model}", "{x}", "--out", "{missing}/pred.npy"], "--out", "does not exist"),
    (["infer", "{model}", "{x}", "--logits-out", "{tmp}"], "--logits-out", "is a folder"),
    (["bench-infer", "{model}", "--batch", "1", "--seconds", "0.05", "--json", "{missing}/b.json"], "--json",
     "does not exist"),
    (["profile", "detect", "--seconds", "0.05", "--out", "{missing}/me.yaml"], "--out", "does not exist"),
    (["export", "{run}", "--out", "/dev/null/x"], "--out", "/dev/null is not a folder"),
    (["export", "{run}", "--out", "{tmp}/e", "--data-dir", "{missing}"], "--data-dir", "no such folder"),
])
def test_output_and_data_paths_are_checked_before_the_work(root, model, tmp_path, capsys, argv, option, culprit):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    fill = {"model": model, "x": str(tmp_path / "x.npy"), "missing": str(tmp_path / "missing"), "tmp": str(tmp_path),
            "run": str(root / "run")}
    argv = [arg.format(**fill) for arg in argv]
    assert main(argv) == 2
    one_line_error(capsys, f"{option} {argv[argv.index(option) + 1]}", culprit)
