"""From a lab's data config to datasets and partitions: the paper partition on any dataset, the synthetic fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_mcepl.data.partitions import paper_partition
from edge_mcepl.data.resolve import load_lab_data
from edge_mcepl.errors import UserError
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config

SMALL_CNN = (1, 28, 28)


def _write(path: Path, rows: list[list[int]]) -> str:
    path.write_text("\n".join(" ".join(map(str, row)) for row in rows) + "\n")
    return str(path)


@pytest.fixture
def shard_files(tmp_path: Path) -> dict[str, str]:
    """Three agents' classes and nominal counts over 10 classes: 5 + 6 of class 2, which 12 images per class hold."""
    counts = [[4, 4] + [0] * 8, [0, 4, 6] + [0] * 7, [4, 0, 5] + [0] * 7]
    return {"data.partition": "paper", "data.classes_file": _write(tmp_path / "classes.txt", [[0, 1], [2, 1], [2, 0]]),
            "data.train_counts_file": _write(tmp_path / "counts.txt", counts), "data.data_fraction": 0.5,
            "agents": 3}


def _same_partitions(got, expected) -> bool:
    return all(g.classes == e.classes and np.array_equal(g.train_indices, e.train_indices)
               and np.array_equal(g.test_indices, e.test_indices) for g, e in zip(got, expected, strict=True))


def test_paper_partition_runs_on_synthetic_data(shard_files):
    config = tiny_lab_config(**shard_files)
    lab = load_lab_data(config, SMALL_CNN, log=lambda _: None)
    expected = paper_partition(lab.train.labels.numpy(), lab.test.labels.numpy(), config.data.classes_file,
                               config.data.train_counts_file, None, 0.5)
    assert _same_partitions(lab.partitions, expected)
    assert [p.classes for p in lab.partitions] == [(0, 1), (1, 2), (0, 2)]
    assert [p.train_indices.size for p in lab.partitions] == [4, 5, 4]  # ⌊count/2⌋ of each block


def test_the_synthetic_fallback_keeps_the_paper_partition_and_the_saved_config_says_synthetic(shard_files, tmp_path):
    missing = tmp_path / "no-cifar-here"
    missing.mkdir()
    config = tiny_lab_config(**shard_files, **{"data.dataset": "cifar10", "data.data_dir": str(missing),
                                               "data.fallback_to_synthetic": True, "model": "small-cnn", "rounds": 1})
    notes: list[str] = []
    lab = load_lab_data(config, SMALL_CNN, log=notes.append)
    assert any("SYNTHETIC" in n and "paper partition is kept" in n for n in notes), notes
    assert (lab.config.dataset, lab.config.partition) == ("synthetic", "paper")
    assert [p.classes for p in lab.partitions] == [(0, 1), (1, 2), (0, 2)]  # not 4 random classes per agent

    Simulator(config, log=lambda _: None).run(tmp_path / "run", progress=False)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["data"]["dataset"], saved["data"]["partition"]) == ("synthetic", "paper")


def test_counts_that_do_not_fit_the_dataset_name_the_file_class_and_row(shard_files):
    config = tiny_lab_config(**shard_files, **{"data.synthetic_train_per_class": 10})
    with pytest.raises(UserError) as err:
        load_lab_data(config, SMALL_CNN, log=lambda _: None)
    message = str(err.value)
    assert "\n" not in message and message.startswith(config.data.train_counts_file)
    assert "column 2 sums to 11 but the train set has only 10 images of class 2 (row 2 is the first" in message
