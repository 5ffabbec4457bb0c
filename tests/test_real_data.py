"""Real CIFAR-10 / MNIST and the paper's setting files, when ../shared is present (integration)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_mcepl.config import config_from_dict
from edge_mcepl.data.cifar10 import load_cifar10
from edge_mcepl.data.mnist import load_mnist
from edge_mcepl.data.partitions import check_disjoint, paper_partition
from edge_mcepl.data.resolve import load_lab_data
from edge_mcepl.errors import UserError
from edge_mcepl.topology import from_adjacency_file

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = Path(os.environ.get("EDGE_MCEPL_DATA", SHARED / "data"))
SETTING = SHARED / "reference" / "mcepl-paper-setting"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(scope="module")
def cifar() -> tuple[torch.Tensor, torch.Tensor]:
    train, test = load_cifar10(_require(DATA / "cifar-10-batches-py"))
    assert train.images.shape == (50_000, 3, 32, 32) and test.images.shape == (10_000, 3, 32, 32)
    assert float(train.images.min()) == -1.0 and float(train.images.max()) == 1.0
    return train.labels, test.labels


def test_cifar10_class_counts_and_order(cifar: tuple[torch.Tensor, torch.Tensor]) -> None:
    train_labels, test_labels = cifar
    assert torch.bincount(train_labels).tolist() == [5000] * 10
    assert torch.bincount(test_labels).tolist() == [1000] * 10
    assert test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # original order


def test_paper_partition_on_cifar10(cifar: tuple[torch.Tensor, torch.Tensor]) -> None:
    train_labels, test_labels = (t.numpy() for t in cifar)
    setting = _require(SETTING)
    classes = np.loadtxt(setting / "classes_per_agent_4.txt", dtype=np.int64)
    counts = np.loadtxt(setting / "train_counts_4.txt", dtype=np.int64)
    parts = paper_partition(
        train_labels,
        test_labels,
        setting / "classes_per_agent_4.txt",
        setting / "train_counts_4.txt",
        setting / "test_counts_4.txt",
        data_fraction=0.2,
    )
    assert len(parts) == 20
    check_disjoint(parts, train_labels.size)
    for agent, part in enumerate(parts):
        assert set(part.classes) == set(classes[agent].tolist())
        assert part.train_indices.size == int(np.sum(counts[agent] // 5))
        assert set(train_labels[part.train_indices].tolist()) == set(part.classes)
        assert part.test_indices.size == 4000
        assert set(test_labels[part.test_indices].tolist()) == set(part.classes)


def test_mnist_loads() -> None:
    train, test = load_mnist(_require(DATA / "mnist"))
    assert len(train) == 60_000 and len(test) == 10_000
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(float(train.images.mean())) < 0.01 and abs(float(train.images.std()) - 1) < 0.01


def test_reference_adjacency() -> None:
    graph = from_adjacency_file(_require(SETTING / "adjacency_20.txt"))
    degrees = [graph.degree(i) for i in range(20)]
    assert graph.num_edges == 104 and (min(degrees), max(degrees)) == (2, 14)
    assert graph.neighbours(10) == (12, 14)


def test_paper_partition_on_mnist_where_the_reference_counts_fit() -> None:
    setting, _ = _require(SETTING), _require(DATA / "mnist")
    raw = {"agents": 20, "data": {"dataset": "mnist", "data_dir": str(DATA), "partition": "paper",
                                  "classes_file": str(setting / "classes_per_agent_4.txt"),
                                  "train_counts_file": str(setting / "train_counts_4.txt")}}
    lab = load_lab_data(config_from_dict(raw), (1, 28, 28), log=lambda _: None)
    counts = np.loadtxt(setting / "train_counts_4.txt", dtype=np.int64)
    labels = lab.train.labels.numpy()
    assert lab.description == f"mnist from {DATA}" and len(lab.partitions) == 20
    for agent, part in enumerate(lab.partitions):
        assert part.train_indices.size == int(np.sum(counts[agent] // 5))
        assert set(labels[part.train_indices].tolist()) == set(part.classes)
    # The reference test counts describe CIFAR-10's test set (1000 per class); MNIST's differ: one line names it.
    raw["data"]["test_counts_file"] = str(setting / "test_counts_4.txt")
    with pytest.raises(UserError) as err:
        load_lab_data(config_from_dict(raw), (1, 28, 28), log=lambda _: None)
    assert str(err.value).startswith(str(setting / "test_counts_4.txt")) and "\n" not in str(err.value)
