"""Fixed weights from a seed — deterministic, PyTorch-default bounds, fingerprinted, shared.

docs/algorithm.md#initialisation
"""

from __future__ import annotations

import math
import subprocess
import sys

import torch

from edge_mcepl.nn.layers import MaskedLinear
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights, seeded_scores
from edge_mcepl.nn.zoo import build_model


def fixed(model_name="small-cnn", seed=1234, num_classes=10):
    return generate_fixed_weights(build_model(model_name, num_classes), model_name, seed)


def test_generation_is_deterministic_per_seed():
    a, b, other = fixed(seed=7), fixed(seed=7), fixed(seed=8)
    assert list(a.tensors) == list(b.tensors) == list(other.tensors)
    for name in a.tensors:
        assert torch.equal(a.tensors[name], b.tensors[name])
        assert not torch.equal(a.tensors[name], other.tensors[name]), name
    # Each layer has its own random stream: scaled to unit bound, no two layers start alike.
    model = build_model("small-cnn")
    starts = [a.tensors[f"{name}.weight"].reshape(-1)[:64] / layer.init_bound for name, layer in model.masked_layers()]
    for i in range(len(starts)):
        for j in range(i + 1, len(starts)):
            assert not torch.allclose(starts[i], starts[j], atol=1e-3)


def test_weights_and_biases_lie_within_default_init_bounds():
    model = build_model("small-cnn")
    weights = generate_fixed_weights(model, "small-cnn", 3)
    for name, layer in model.masked_layers():
        shape = tuple(layer.weight.shape)
        bound = 1.0 / math.sqrt(math.prod(shape[1:]))  # fan_in = c_in·k·k or in_features
        w = weights.tensors[f"{name}.weight"]
        assert tuple(w.shape) == shape and w.dtype == torch.float32
        assert float(w.abs().max()) <= bound
        assert float(w.max()) > 0.9 * bound and float(w.min()) < -0.9 * bound, "uniform over the whole range"
        assert abs(float(w.mean())) < 0.1 * bound
        if isinstance(layer, MaskedLinear):
            b = weights.tensors[f"{name}.bias"]
            assert tuple(b.shape) == (shape[0],)
            assert float(b.abs().max()) <= bound
            assert float(b.abs().max()) > 0.5 * bound
        else:
            assert f"{name}.bias" not in weights.tensors


def test_fingerprint_identifies_seed_model_and_classes():
    base = fixed().fingerprint
    assert fixed().fingerprint == base
    assert len(base) == 16
    assert fixed(seed=1235).fingerprint != base
    assert fixed(num_classes=5).fingerprint != base
    assert fixed("alexnet-cifar").fingerprint != base
    assert fixed().fingerprint_hex == base.hex()


def test_fingerprint_is_the_same_in_another_process():
    code = ("from edge_mcepl.nn.weights import generate_fixed_weights\n"
            "from edge_mcepl.nn.zoo import build_model\n"
            "print(generate_fixed_weights(build_model('small-cnn', 10), 'small-cnn', 99).fingerprint_hex)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == fixed(seed=99).fingerprint_hex


def test_load_shares_storage_between_models():
    weights = fixed(seed=2)
    first, second = build_model("small-cnn"), build_model("small-cnn")
    load_fixed_weights(first, weights)
    load_fixed_weights(second, weights)
    for (name, a), (_, b) in zip(first.masked_layers(), second.masked_layers()):
        assert a.weight.data_ptr() == b.weight.data_ptr() == weights.tensors[f"{name}.weight"].data_ptr()
        assert torch.equal(a.weight, weights.tensors[f"{name}.weight"])
        if isinstance(a, MaskedLinear):
            assert a.bias.data_ptr() == b.bias.data_ptr() == weights.tensors[f"{name}.bias"].data_ptr()
    # The weights are buffers: nothing in the network is trainable (scores belong to the rule).
    assert not list(first.named_parameters())


def test_seeded_scores_shared_or_per_agent():
    models = [build_model("small-cnn") for _ in range(4)]
    scores = [seeded_scores(models[0], 5), seeded_scores(models[1], 5), seeded_scores(models[2], 5, agent_id=0),
              seeded_scores(models[3], 5, agent_id=1)]
    weights = fixed(seed=5)
    for index, (name, layer) in enumerate(models[0].masked_layers()):
        z = {i: s[index] for i, s in enumerate(scores)}
        assert torch.equal(z[0], z[1]), "shared scores are identical across agents"
        assert not torch.equal(z[2], z[3]), "per-agent scores differ"
        assert not torch.equal(z[0], z[2])
        assert not torch.equal(z[0], weights.tensors[f"{name}.weight"]), "scores are not the weights"
        bound = layer.init_bound
        assert float(z[0].abs().max()) <= bound and float(z[0].abs().max()) > 0.9 * bound
    again = seeded_scores(build_model("small-cnn"), 5, agent_id=1)
    assert all(torch.equal(a, b) for a, b in zip(again, scores[3]))
