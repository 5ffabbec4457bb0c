"""CIFAR-10 from the standard "python version" pickle batches, plus its verified download.

The batch files are Python pickles holding numpy arrays, so unpickling cannot be avoided for this
format. To keep that safe enough, :func:`load_cifar10` only ever reads *local* files the user
pointed at, and unpickles them with an allow-list that admits the handful of numpy constructors an
ndarray needs and nothing else — a tampered file fails instead of running code.
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_mcepl.data.arrays import ArrayDataset
from edge_mcepl.data.preprocessing import RECIPES, apply_steps
from edge_mcepl.errors import UserError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
# How a missing-data error says to get it: the command first (its default --dest ./data is searched).
FETCH = "fetch it with `edge-mcepl download cifar10` (from Python: edge_mcepl.data.cifar10.download_cifar10)"
NUM_CLASSES = 10
_PIXELS = 3 * 32 * 32

# (module, name) pairs an ndarray pickle needs; numpy 2 spells the first one ``numpy._core``.
# ``_codecs.encode`` is how protocol-2 pickles written by Python 3 store ``bytes`` keys.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global outside :data:`_ALLOWED_GLOBALS`, so a pickle cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def load_cifar10(data_dir: str | Path) -> tuple[ArrayDataset, ArrayDataset]:
    """Train (50,000) and test (10,000) sets in the original order, normalised to [−1, 1].

    ``data_dir`` is either the ``cifar-10-batches-py`` folder itself or a folder containing it.
    Pixels become float32 CHW as ``x = float32(p)·float32(2/255) − 1``, two float32 operations
    (:data:`~.preprocessing.RECIPES`, docs/algorithm.md#preprocessing). That is (p/255 − 0.5)/0.5 on
    paper, but not bit for bit: computed that way 111 of the 256 byte values come out one float32 step apart.
    """
    folder = _locate_folder(Path(data_dir))
    train = _load_split(folder, TRAIN_FILES, "cifar10-train")
    test = _load_split(folder, (TEST_FILE,), "cifar10-test")
    return train, test


def download_cifar10(dest: str | Path) -> Path:
    """Download and unpack CIFAR-10 into ``dest``; returns the ``cifar-10-batches-py`` folder.

    The archive's md5 is checked before anything is extracted, and extraction refuses links and
    paths escaping ``dest``, so a corrupted or hostile archive cannot write outside it.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        fetch_verified(CIFAR10_URL, archive, CIFAR10_MD5)
        safe_extract_tar(archive, dest)
    return dest / FOLDER_NAME


def fetch_verified(url: str, target: Path, md5: str) -> None:
    """Stream ``url`` to ``target`` and fail unless its md5 is ``md5`` (no partial file is left).

    Shared with the MNIST downloader: both datasets are published with md5 checksums.
    """
    partial = target.with_name(target.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise UserError(f"could not download {url}: {err}") from err
    if digest.hexdigest() != md5:
        partial.unlink(missing_ok=True)
        raise UserError(f"{url}: md5 {digest.hexdigest()} does not match the expected {md5}")
    partial.replace(target)


def safe_extract_tar(archive: Path, dest: Path) -> None:
    """Extract only regular files and folders that stay inside ``dest``."""
    root = dest.resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            inside = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not inside.is_relative_to(root):
                raise UserError(f"{archive}: refusing unsafe archive member {member.name!r}")
        tar.extractall(root, members=members)


def _locate_folder(data_dir: Path) -> Path:
    for candidate in (data_dir, data_dir / FOLDER_NAME):
        if (candidate / TEST_FILE).is_file() or (candidate / TRAIN_FILES[0]).is_file():
            return candidate
    raise UserError(
        f"no CIFAR-10 batches in {data_dir} (expected {FOLDER_NAME}/ or data_batch_1..5 and "
        f"test_batch there); pass --data-dir pointing at it, or {FETCH}"
    )


def _load_split(folder: Path, names: tuple[str, ...], split: str) -> ArrayDataset:
    batches = [_read_batch(folder / name) for name in names]
    pixels = np.concatenate([data for data, _ in batches])
    labels = np.concatenate([lab for _, lab in batches])
    images = torch.from_numpy(apply_steps(pixels.reshape(-1, 3, 32, 32), RECIPES["cifar10"].steps))
    return ArrayDataset(images, torch.from_numpy(labels), NUM_CLASSES, split)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 N×3072, int64 N), validated."""
    if not path.is_file():
        raise UserError(
            f"missing CIFAR-10 batch {path}; pass --data-dir pointing at a complete "
            f"{FOLDER_NAME} folder, or {FETCH}"
        )
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{path} is not a readable CIFAR-10 pickle batch: {err}") from err
    if not isinstance(batch, dict):
        raise UserError(f"{path}: expected a dict with 'data' and 'labels', got {type(batch).__name__}")
    data = _field(batch, "data", path)
    try:
        labels = np.asarray(_field(batch, "labels", path), dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise UserError(f"{path}: 'labels' must be a list of integers: {err}") from err
    well_formed = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
    if not well_formed or data.shape[1] != _PIXELS:
        raise UserError(f"{path}: 'data' must be a uint8 array of shape (N, {_PIXELS})")
    if labels.shape != (data.shape[0],):
        raise UserError(f"{path}: {data.shape[0]} images but {labels.shape} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}")
    return data, labels


def _field(batch: dict, key: str, path: Path) -> Any:
    for spelling in (key.encode(), key):
        if spelling in batch:
            return batch[spelling]
    raise UserError(f"{path}: CIFAR-10 batch has no '{key}' entry")
