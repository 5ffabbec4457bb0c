"""Dataset readers and the synthetic generator, on small files built in tmp_path (no real data)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_mcepl.data.arrays import ArrayDataset
from edge_mcepl.data.cifar10 import fetch_verified, load_cifar10, safe_extract_tar
from edge_mcepl.data.mnist import load_mnist
from edge_mcepl.data.synthetic import make_synthetic
from edge_mcepl.errors import UserError

# ---------------------------------------------------------------- ArrayDataset


def test_array_dataset_subset_keeps_order_and_metadata() -> None:
    data = ArrayDataset(torch.arange(5.0).reshape(5, 1, 1, 1), torch.tensor([0, 1, 2, 0, 1]), 3, "toy")
    part = data.subset(np.array([4, 0]))
    assert len(part) == 2
    assert part.images.flatten().tolist() == [4.0, 0.0]
    assert part.labels.tolist() == [1, 0]
    assert (part.num_classes, part.name) == (3, "toy")


@pytest.mark.parametrize(
    ("images", "labels"),
    [
        (torch.zeros(3, 1, 2, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.int64)),
        (torch.zeros(3, 2, 2), torch.zeros(3, dtype=torch.int64)),
        (torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.int64)),
        (torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 5])),
    ],
)
def test_array_dataset_rejects_malformed_tensors(images: torch.Tensor, labels: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        ArrayDataset(images, labels, 3, "bad")


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_per_seed() -> None:
    a_train, a_test = make_synthetic(train_per_class=20, test_per_class=5, seed=3)
    b_train, b_test = make_synthetic(train_per_class=20, test_per_class=5, seed=3)
    c_train, _ = make_synthetic(train_per_class=20, test_per_class=5, seed=4)
    assert torch.equal(a_train.images, b_train.images) and torch.equal(a_test.images, b_test.images)
    assert not torch.allclose(a_train.images, c_train.images)


def test_synthetic_shapes_and_balance() -> None:
    train, test = make_synthetic(num_classes=4, shape=(3, 16, 12), train_per_class=7, test_per_class=2)
    assert train.images.shape == (28, 3, 16, 12) and test.images.shape == (8, 3, 16, 12)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == [7] * 4
    assert abs(float(train.images.mean())) < 0.2 and 0.7 < float(train.images.std()) < 1.3


def test_synthetic_is_learnable_but_not_trivial() -> None:
    train, test = make_synthetic(train_per_class=50, test_per_class=20, seed=0)
    means = torch.stack([train.images[train.labels == c].mean(0) for c in range(10)]).flatten(1)
    predicted = torch.cdist(test.images.flatten(1), means).argmin(1)
    assert (predicted == test.labels).float().mean() > 0.9  # classes are separable
    same_class = train.images[train.labels == 0]
    # ... yet samples of one class differ substantially (shift + contrast + noise)
    assert float((same_class - same_class.mean(0)).std()) > 0.3
    assert float(same_class[0].std()) > 0.5  # and images are not constant


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(UserError, match="num_classes"):
        make_synthetic(num_classes=1)
    with pytest.raises(UserError, match="noise"):
        make_synthetic(noise=-1.0)


# ---------------------------------------------------------------- MNIST idx


def _idx_bytes(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, train: int = 6, test: int = 4, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        raw = _idx_bytes(0x803 if array.ndim == 3 else 0x801, array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = _write_mnist(tmp_path / "mnist", gz=gz)
    train, test = load_mnist(tmp_path)  # the parent folder works too
    assert train.images.shape == (6, 1, 28, 28) and len(test) == 4
    assert train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    expected = (arrays["t10k-images-idx3-ubyte"][2] / 255.0 - 0.1307) / 0.3081
    assert np.allclose(test.images[2, 0].numpy(), expected, atol=1e-5)


def test_mnist_rejects_truncated_file(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="train-images-idx3-ubyte.*truncated"):
        load_mnist(tmp_path)


def test_mnist_rejects_bad_magic(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + path.read_bytes()[4:])
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.*magic"):
        load_mnist(tmp_path)


def test_mnist_rejects_truncated_gzip(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist(tmp_path)


def test_mnist_rejects_label_count_mismatch(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(0x801, np.zeros(5)))
    with pytest.raises(UserError, match="6 images.*5 labels"):
        load_mnist(tmp_path)


def test_mnist_missing_folder_names_path_and_download(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=rf"{re.escape(str(tmp_path))}.*download_mnist"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------- CIFAR-10 pickles


def _write_cifar(folder: Path, per_batch: int = 3) -> dict[str, dict[bytes, object]]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        batches[name] = batch
    return batches


def test_cifar_reads_batches_in_order_as_chw(tmp_path: Path) -> None:
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    train, test = load_cifar10(tmp_path)  # parent folder
    again, _ = load_cifar10(tmp_path / "cifar-10-batches-py")  # the folder itself
    assert torch.equal(train.images, again.images)
    assert train.images.shape == (15, 3, 32, 32) and len(test) == 3
    assert train.labels.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    row = batches["data_batch_2"][b"data"][1]  # 4th train image; rows hold R, G, B planes
    expected = (row.reshape(3, 32, 32) / 255.0 - 0.5) / 0.5
    assert np.allclose(train.images[4].numpy(), expected, atol=1e-6)


def test_cifar_missing_folder_names_path_and_download(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=rf"{re.escape(str(tmp_path))}.*--data-dir.*download_cifar10"):
        load_cifar10(tmp_path / "nowhere")


def test_cifar_missing_batch_names_the_file(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3"):
        load_cifar10(tmp_path)


def test_cifar_refuses_pickles_that_would_run_code(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.mkdir, (str(marker),))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(UserError, match="test_batch"):
        load_cifar10(tmp_path)
    assert not marker.exists()


# ---------------------------------------------------------------- download helpers (no network)


def test_fetch_verified_checks_md5_and_leaves_nothing_on_mismatch(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"cifar")
    url = source.as_uri()  # file:// exercises the same urllib path as https://
    fetch_verified(url, tmp_path / "ok.bin", hashlib.md5(b"cifar").hexdigest())
    assert (tmp_path / "ok.bin").read_bytes() == b"cifar"
    with pytest.raises(UserError, match="md5"):
        fetch_verified(url, tmp_path / "bad.bin", "0" * 32)
    assert not (tmp_path / "bad.bin").exists() and not (tmp_path / "bad.bin.part").exists()


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt"])
def test_safe_extract_refuses_paths_outside_dest(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "dest").mkdir()
    with pytest.raises(UserError, match="unsafe archive member"):
        safe_extract_tar(archive, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def test_safe_extract_refuses_links(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(UserError, match="data_batch_1"):
        safe_extract_tar(archive, tmp_path)
