"""MNIST from the four standard idx files (gzipped or not), plus its verified download.

The idx headers are parsed strictly — magic number, dimensions and exact payload size — because a
truncated download otherwise shows up much later as silently wrong images or labels.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from edge_mcepl.data.arrays import ArrayDataset
from edge_mcepl.data.cifar10 import fetch_verified
from edge_mcepl.data.preprocessing import RECIPES, apply_steps
from edge_mcepl.errors import UserError

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FOLDER_NAME = "mnist"
# How a missing-data error says to get it: the command first (it writes ./data/mnist, which is searched).
FETCH = "fetch them with `edge-mcepl download mnist` (from Python: edge_mcepl.data.mnist.download_mnist)"
NUM_CLASSES = 10
_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def load_mnist(data_dir: str | Path) -> tuple[ArrayDataset, ArrayDataset]:
    """Train (60,000) and test (10,000) sets as float32 1×28×28 images, standardised.

    ``data_dir`` is the folder holding the idx files, or a folder containing ``mnist/``. Each pixel
    is ``((float32(p) / 255) − float32(0.1307)) / float32(0.3081)``, three float32 operations in that
    order (:data:`~.preprocessing.RECIPES`): a device must divide, not multiply by reciprocals.
    """
    folder = _locate_folder(Path(data_dir))
    train = _load_split(folder, "train", "mnist-train")
    test = _load_split(folder, "t10k", "mnist-test")
    return train, test


def download_mnist(dest: str | Path) -> Path:
    """Download the four gzipped idx files into ``dest``, each md5-checked; returns ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, md5 in MNIST_MD5.items():
        if not (dest / name).is_file():
            fetch_verified(MNIST_MIRROR + name, dest / name, md5)
    return dest


def read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 idx file as an array of shape ``(N, *item_shape)``; anything else is a UserError."""
    raw = _read_bytes(path)
    ndim = 1 + len(item_shape)
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise UserError(f"{path}: truncated idx header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise UserError(f"{path}: idx magic number is {found:#010x}, expected {magic:#010x}")
    dims = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    if dims[1:] != item_shape:
        raise UserError(f"{path}: idx item shape is {dims[1:]}, expected {item_shape}")
    expected = header_size + int(np.prod(dims))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise UserError(f"{path}: {problem}: {len(raw)} bytes, header says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def _locate_folder(data_dir: Path) -> Path:
    for candidate in (data_dir, data_dir / FOLDER_NAME):
        if _idx_path(candidate, "t10k-labels-idx1-ubyte") is not None:
            return candidate
    raise UserError(
        f"no MNIST idx files in {data_dir} (expected train-/t10k- images/labels idx files, "
        f"optionally .gz); pass --data-dir pointing at them, or {FETCH}"
    )


def _load_split(folder: Path, prefix: str, name: str) -> ArrayDataset:
    images_path = _require(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _require(folder, f"{prefix}-labels-idx1-ubyte")
    pixels = read_idx(images_path, _IMAGES_MAGIC, (28, 28))
    labels = read_idx(labels_path, _LABELS_MAGIC, ())
    if len(pixels) != len(labels):
        raise UserError(f"{images_path} has {len(pixels)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise UserError(f"{labels_path}: labels must lie in 0..{NUM_CLASSES - 1}")
    images = torch.from_numpy(apply_steps(pixels[:, None], RECIPES["mnist"].steps))
    return ArrayDataset(images, torch.from_numpy(labels.astype(np.int64)), NUM_CLASSES, name)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _require(folder: Path, stem: str) -> Path:
    path = _idx_path(folder, stem)
    if path is None:
        raise UserError(
            f"missing MNIST file {folder / stem}[.gz]; pass --data-dir pointing at the four idx "
            f"files, or {FETCH}"
        )
    return path


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path}: not a complete gzip file: {err}") from err
