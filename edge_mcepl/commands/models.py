"""``edge-mcepl models``: the zoo, with masked-weight counts and weight fingerprints."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list the model zoo with weight counts and fingerprints")
    models.add_argument("--seed", type=int, default=1234)
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..nn.weights import generate_fixed_weights
    from ..nn.zoo import ZOO, build_model

    for name, entry in ZOO.items():
        model = build_model(name)
        n = sum(layer.weight.numel() for _, layer in model.masked_layers())
        fp = generate_fixed_weights(model, name, args.seed).fingerprint_hex
        print(f"{name:14s} input {entry.input_shape}  {n:>9,d} masked weights  fingerprint(seed {args.seed}) {fp}  "
              f"— {entry.description}")
    return 0
