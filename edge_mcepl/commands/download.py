"""``edge-mcepl download``: fetch CIFAR-10 or MNIST (checksummed) into a data folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    dl = sub.add_parser("download", help="download a dataset (md5-checked) for --data-dir")
    dl.add_argument("dataset", choices=("cifar10", "mnist"))
    dl.add_argument("--dest", default="data", help="target folder (default ./data, searched by simulate)")
    dl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.cifar10 import download_cifar10
    from ..data.mnist import download_mnist

    if args.dataset == "cifar10":
        where = download_cifar10(args.dest)
    else:
        where = download_mnist(f"{args.dest}/mnist")
    print(f"{args.dataset} is in {where}")
    return 0
