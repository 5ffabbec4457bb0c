"""The model zoo: networks whose every conv/linear weight is a masked layer.

``alexnet-cifar`` is the paper's model (docs/algorithm.md#alexnet-cifar) exactly; ``small-cnn`` is a fast net for
1×28×28 inputs (MNIST, the synthetic demo data) so tests and demos run in seconds on a CPU;
``resnet20-cifar`` is a second CIFAR architecture, a residual network (docs/algorithm.md#resnet20-cifar).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from .layers import MaskedConv2d, MaskedLayer, MaskedLinear
from .lrn import LocalResponseNorm
from .norm import InstanceNorm
from .width import width_shapes


class MaskedNetwork(nn.Module):
    """Base of every zoo model: exposes its masked layers in a fixed order (the wire order)."""

    input_shape: tuple[int, int, int]
    num_classes: int
    elu_logits: bool = False

    def masked_layers(self) -> list[tuple[str, MaskedLayer]]:
        return [(name, m) for name, m in self.named_modules() if isinstance(m, MaskedLayer)]

    @property
    def device(self) -> torch.device:
        """Where this agent's model lives (received messages are moved here): its fixed weights' device."""
        return next(self.buffers()).device

    def layer_shapes(self) -> list[tuple[int, ...]]:
        """The full shape of every masked layer (the lab's model, whatever width this device computes)."""
        return [tuple(layer.weight.shape) for _, layer in self.masked_layers()]

    def block_shapes(self) -> list[tuple[int, ...]]:
        """The block every masked layer computes with (:meth:`narrow`)."""
        return [layer.block_shape for _, layer in self.masked_layers()]

    def narrow(self, width: float) -> None:
        """Compute only the ordered-width sub-network of ``width`` (docs/algorithm.md#width; 1: the whole)."""
        for (_, layer), shape in zip(self.masked_layers(), width_shapes(self.layer_shapes(), width)):
            layer.narrow(shape)

    def logits(self, x: Tensor) -> Tensor:
        """Forward pass, with the reference's ELU on the logits when ``elu_logits`` is set."""
        out = self(x.contiguous(memory_format=torch.channels_last))
        return F.elu(out) if self.elu_logits else out


class AlexNetCifar(MaskedNetwork):
    """The paper's "AlexNet" for 3×32×32 CIFAR-10 (1,227,328 masked weights, 202 fixed biases).

    ``multiplier`` widens every hidden layer (conv filters, fc1 units) by that factor: the random
    network a mask is searched in gets larger (over-parameterisation, issue 15's width ablation)
    while the paper's architecture is ``multiplier`` 1.
    """

    def __init__(self, num_classes: int = 10, multiplier: int = 1) -> None:
        super().__init__()
        c1, c2, c3, hidden = 64 * multiplier, 128 * multiplier, 256 * multiplier, 192 * multiplier
        self.input_shape, self.num_classes = (3, 32, 32), num_classes
        self.conv1 = MaskedConv2d(3, c1, 5, padding=1)
        self.lrn1 = LocalResponseNorm(4, alpha=2e-5, beta=0.75, k=1.0)
        self.conv2 = MaskedConv2d(c1, c2, 5, padding=1)
        self.lrn2 = LocalResponseNorm(4, alpha=1e-4, beta=0.75, k=1.0)
        self.conv3 = MaskedConv2d(c2, c3, 5, padding=1)
        self.lrn3 = LocalResponseNorm(4, alpha=1e-4, beta=0.75, k=1.0)
        self.fc1 = MaskedLinear(c3 * 4, hidden)
        self.fc2 = MaskedLinear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(self.lrn1(F.elu(self.conv1(x))), 3, 2)
        x = F.max_pool2d(self.lrn2(F.elu(self.conv2(x))), 3, 2)
        x = F.max_pool2d(self.lrn3(F.elu(self.conv3(x))), 3, 2, padding=1)
        return self.fc2(F.elu(self.fc1(torch.flatten(x, 1))))


class SmallCNN(MaskedNetwork):
    """Two convs + two linears for 1×28×28 inputs (224,800 masked weights)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.input_shape, self.num_classes = (in_channels, 28, 28), num_classes
        self.conv1 = MaskedConv2d(in_channels, 32, 3)
        self.conv2 = MaskedConv2d(32, 64, 3)
        self.fc1 = MaskedLinear(64 * 5 * 5, 128)
        self.fc2 = MaskedLinear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.elu(self.conv1(x)), 2)
        x = F.max_pool2d(F.elu(self.conv2(x)), 2)
        return self.fc2(F.elu(self.fc1(torch.flatten(x, 1))))


def option_a_shortcut(x: Tensor, channels: int, stride: int) -> Tensor:
    """He et al.'s parameter-free shortcut "A": subsample by ``stride``, zero channels appended at the *end*.

    The input's C channels become the first C of ``channels``, so the first k filters of a stage
    feed the first k channels of the next at every ordered width (docs/algorithm.md#width): the
    padding is read off the actual channel counts, those of a narrowed block included.
    """
    if stride != 1:
        x = x[:, :, ::stride, ::stride]
    extra = channels - x.shape[1]
    if extra < 0:
        raise ValueError(f"a shortcut cannot map {x.shape[1]} channels onto {channels}")
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x


torch.fx.wrap("option_a_shortcut")  # one opaque op in an fx trace (export refuses it by name: export/graph.py)


class BasicBlock(nn.Module):
    """conv3×3 (stride s) → norm → ReLU → conv3×3 → norm, + shortcut, → ReLU (two masked convs)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = MaskedConv2d(in_channels, channels, 3, stride=stride, padding=1)
        self.norm1 = InstanceNorm()
        self.conv2 = MaskedConv2d(channels, channels, 3, padding=1)
        self.norm2 = InstanceNorm()

    def forward(self, x: Tensor) -> Tensor:
        out = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
        return F.relu(out + option_a_shortcut(x, out.shape[1], self.stride))


class ResNet20Cifar(MaskedNetwork):
    """ResNet-20 for 3×32×32 CIFAR-10 (He et al. 2016, §4.2): 19 masked convs + 1 masked linear.

    conv3×3 3→16 → norm → ReLU, three stages of three :class:`BasicBlock` s (16, 32, 64 channels;
    stride 2 in the first block of stages 2 and 3), global average pooling, linear 64→classes with
    a fixed bias. 268,336 masked weights (267,696 conv + 640 linear), 10 fixed biases, 40,551,040
    multiply-adds per image. Choices (docs/algorithm.md#resnet20-cifar):

    - **Instance norm, not BatchNorm** (:class:`~edge_mcepl.nn.norm.InstanceNorm`): the model may
      hold no state but the shared fixed weights — no running statistics, no affine parameters —
      and normalising each image's channels on their own keeps batch-1 inference exact and leaves
      every other channel unchanged when a filter is removed (a zero channel stays 0). Without a
      normalisation the activations of uniform(±1/√fan_in) weights thinned by a mask shrink stage
      after stage, by a factor that depends on the mask.
    - **Option-A shortcuts padded at the end** (:func:`option_a_shortcut`): no shortcut weights
      (nothing to mask or send), and ordered width stays nested — the masked layers in order form a
      shape chain (each conv reads the previous conv's filters), and a narrowed network is plain
      slices of the full one.
    - **ReLU**, as in He et al. (and in the random-weight subnetworks of Ramanujan et al. 2020):
      the AlexNet's ELU kept its unnormalised activations near zero mean, which instance norm does
      here already; ReLU(0) = 0, like ELU, so removed channels stay zero.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.input_shape, self.num_classes = (in_channels, 32, 32), num_classes
        self.conv1 = MaskedConv2d(in_channels, 16, 3, padding=1)
        self.norm1 = InstanceNorm()
        stages, channels = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = [BasicBlock(channels, width, stride), BasicBlock(width, width, 1), BasicBlock(width, width, 1)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.stage1, self.stage2, self.stage3 = stages
        self.fc = MaskedLinear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(x.mean((2, 3)))


def _wide_alexnet(classes: int, _channels: int, multiplier: int) -> MaskedNetwork:
    return AlexNetCifar(classes, multiplier)


@dataclass(frozen=True)
class ZooEntry:
    build: Callable[[int, int], MaskedNetwork]
    input_shape: tuple[int, int, int]
    description: str
    exportable: bool = True  # edge-mcepl export supports it (export/graph.py: a single chain of ops)


ZOO: dict[str, ZooEntry] = {
    "alexnet-cifar": ZooEntry(lambda classes, _channels: AlexNetCifar(classes), (3, 32, 32),
                              "the paper's AlexNet for CIFAR-10 (docs/algorithm.md#alexnet-cifar)"),
    **{f"alexnet-cifar-x{m}": ZooEntry(functools.partial(_wide_alexnet, multiplier=m), (3, 32, 32),
                                        f"AlexNet-CIFAR with {m}× the filters and fc1 units (wider random weights)")
       for m in (2, 4)},
    "small-cnn": ZooEntry(lambda classes, channels: SmallCNN(classes, channels), (1, 28, 28),
                          "small conv net for 1×28×28 inputs (MNIST, synthetic)"),
    "resnet20-cifar": ZooEntry(lambda classes, channels: ResNet20Cifar(classes, channels), (3, 32, 32),
                               "ResNet-20 for CIFAR-10, instance norm, option-A shortcuts; no export yet "
                               "(docs/algorithm.md#resnet20-cifar)", exportable=False),
}


def build_model(name: str, num_classes: int = 10, in_channels: int | None = None) -> MaskedNetwork:
    """Build an (unweighted) zoo model; load weights with :func:`edge_mcepl.nn.weights.load_fixed_weights`."""
    if name not in ZOO:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(sorted(ZOO))}")
    entry = ZOO[name]
    return entry.build(num_classes, in_channels or entry.input_shape[0])
