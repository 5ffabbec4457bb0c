"""resnet20-cifar in the batched engine's stacked layout: several agents' masks in one forward pass.

Instance norm, the residual add and the shortcut all work image by image, so the stacked pass
(nn/stacked.py: grouped convolutions, batched matmul) computes every agent's own network.
"""

from __future__ import annotations

import torch

from edge_mcepl.nn.layers import FixedMask
from edge_mcepl.nn.stacked import StackedSource
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.zoo import build_model

torch.set_num_threads(1)


def test_a_stacked_pass_gives_each_agent_its_own_logits():
    model = build_model("resnet20-cifar")
    load_fixed_weights(model, generate_fixed_weights(model, "resnet20-cifar", 2))
    generator = torch.Generator().manual_seed(0)
    agents, batch = 3, 2
    masks = [[FixedMask((torch.rand(layer.weight.shape, generator=generator) < 0.3).float()) for _ in range(agents)]
             for _, layer in model.masked_layers()]
    images = torch.randn(agents * batch, 3, 32, 32, generator=generator)
    with torch.no_grad():
        alone = []
        for a in range(agents):
            for (_, layer), layer_masks in zip(model.masked_layers(), masks):
                layer.use(layer_masks[a])
            alone.append(model.logits(images[a * batch:(a + 1) * batch]))
        for (_, layer), layer_masks in zip(model.masked_layers(), masks):
            layer.use(StackedSource(layer_masks))
        stacked = model.logits(images)
    torch.testing.assert_close(stacked, torch.cat(alone), rtol=1e-4, atol=1e-5)
