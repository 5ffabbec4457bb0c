"""Turn a lab's data config into datasets and per-agent partitions.

Finding the data is a user-facing step: the demo must say plainly when real CIFAR-10 was not
found and synthetic data is used instead, and a missing dataset without a fallback is a one-line
error naming where it looked.

The fallback (``data.fallback_to_synthetic``) replaces the images, never the partition: a
``paper`` partition stays the paper partition on synthetic data, which then must hold its counts
(``data.synthetic_train_per_class`` images per class; a one-line error says when it does not),
and :attr:`LabData.config` records ``dataset: synthetic``, which the simulator saves as the run's
config: it says what was used. The paper partition works on any dataset whose class counts fit its files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig
from ..errors import UserError
from .arrays import ArrayDataset
from .cifar10 import load_cifar10
from .mnist import load_mnist
from .partitions import AgentPartition, carve_validation, classes_partition, dirichlet_partition, paper_partition
from .synthetic import make_synthetic

DATA_ENV = "EDGE_MCEPL_DATA"
_LOADERS = {"cifar10": load_cifar10, "mnist": load_mnist}


@dataclass(frozen=True)
class LabData:
    train: ArrayDataset
    test: ArrayDataset
    partitions: list[AgentPartition]
    description: str  # one line for the log: what was loaded, from where
    config: DataConfig  # the data settings as used: dataset "synthetic" after a fallback
    directory: Path | None = None  # the folder the real dataset was read from (None: synthetic)


def candidate_dirs(data_dir: str | None) -> list[Path]:
    """An explicit dir, else ``$EDGE_MCEPL_DATA``, ``./data`` and ``../shared/data`` (the dev/CI copy)."""
    if data_dir:
        return [Path(data_dir)]
    env = os.environ.get(DATA_ENV)
    return [Path(env)] if env else [Path("data"), Path("..") / "shared" / "data"]


def load_dataset(dataset: str, data_dir: str | None) -> tuple[ArrayDataset, ArrayDataset, Path]:
    """Load a real dataset from the first candidate dir that has it; UserError naming them all.

    A folder named explicitly that does not exist is a typo, said as such (not "no dataset there").
    """
    if data_dir and not Path(data_dir).is_dir():
        raise UserError(f"{dataset} not found: data folder {data_dir} does not exist (data.data_dir, or --data-dir)")
    loader = _LOADERS[dataset]
    errors = []
    for directory in candidate_dirs(data_dir):
        try:
            train, test = loader(directory)
            return train, test, directory
        except UserError as exc:
            errors.append(str(exc))
    where = ", ".join(str(d) for d in candidate_dirs(data_dir))
    raise UserError(f"{dataset} not found (looked in {where}); pass --data-dir or set {DATA_ENV}. {errors[0]}")


def load_lab_data(config, input_shape: tuple[int, int, int], log) -> LabData:
    """Datasets + partitions for ``config`` (a :class:`~edge_mcepl.config.LabConfig`)."""
    d = config.data
    dataset, description, where = d.dataset, "", None
    if dataset != "synthetic":
        try:
            train, test, where = load_dataset(dataset, d.data_dir)
            description = f"{dataset} from {where}"
        except UserError as exc:
            if not d.fallback_to_synthetic:
                raise
            log(f"NOTE: {exc}")
            log("NOTE: falling back to SYNTHETIC data — results are not CIFAR-10/MNIST numbers"
                + (f"; the paper partition is kept: its counts must fit {d.synthetic_train_per_class} train / "
                   f"{d.synthetic_test_per_class} test images per class (data.synthetic_*_per_class)"
                   if d.partition == "paper" else "."))
            dataset, where = "synthetic", None
    if dataset == "synthetic":
        train, test = make_synthetic(10, input_shape, d.synthetic_train_per_class, d.synthetic_test_per_class,
                                     seed=config.seed, noise=d.synthetic_noise)
        description = f"synthetic {input_shape} data ({len(train)} train / {len(test)} test images)"
    if tuple(train.images.shape[1:]) != tuple(input_shape):
        raise UserError(f"model {config.model!r} takes {input_shape} inputs but {dataset} images are "
                        f"{tuple(train.images.shape[1:])}; choose a matching model")
    used = d.replace(dataset=dataset)
    parts = carve_validation(_partition(config, used, train, test), d.validation_fraction, config.seed)
    return LabData(train, test, parts, description, used, where)


def _partition(config, d: DataConfig, train: ArrayDataset, test: ArrayDataset) -> list[AgentPartition]:
    labels = (train.labels.numpy(), test.labels.numpy())
    if d.partition == "paper":
        return _paper(config, d, *labels)
    if d.partition == "dirichlet":
        return dirichlet_partition(*labels, config.agents, d.dirichlet_alpha, config.seed,
                                   shard_fraction=d.shard_fraction)
    return classes_partition(*labels, config.agents, d.classes_per_agent, config.seed, shard_fraction=d.shard_fraction)


def _paper(config, d: DataConfig, train_labels, test_labels) -> list[AgentPartition]:
    """The paper partition on whatever dataset was loaded; its files' counts are checked against it."""
    # The config refuses a paper partition without these two files.
    assert d.classes_file is not None and d.train_counts_file is not None
    parts = paper_partition(train_labels, test_labels, d.classes_file, d.train_counts_file, d.test_counts_file,
                            d.data_fraction)
    if len(parts) != config.agents:
        raise UserError(f"{d.classes_file}: describes {len(parts)} agents but the lab has agents: {config.agents}")
    return parts
