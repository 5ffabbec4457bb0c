"""A zoo model's forward pass as a flat list of ops, read off the model itself with ``torch.fx``.

Export must rebuild exactly the computation the agent trained, so the op list is traced from the
model's ``forward`` rather than written out a second time by hand: a zoo model that changes (or a
new one) is picked up, and anything export cannot reproduce is refused with a clear error instead
of being exported wrongly. Masked layers and the LRN module are kept as leaves; ``F.elu``,
``F.relu`` and ``F.max_pool2d`` are recorded as calls with their arguments.

Supported: a single chain (each op consumes the previous op's output) of masked conv / linear
layers, ELU, ReLU, local response norm, max pooling and ``flatten(x, 1)``. The final ELU on the
logits (``MaskedNetwork.logits`` with ``elu_logits``) is not part of ``forward``; callers add it.
Not supported yet, and refused by name before anything else: a residual add (``resnet20-cifar``'s
shortcuts: the add couples the channels of its two branches, so a filter can only be removed with
every filter that writes the same channel) and instance norm (docs/algorithm.md#resnet20-cifar).
"""

from __future__ import annotations

from dataclasses import dataclass

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F

from ..errors import UserError
from ..nn.layers import MaskedConv2d, MaskedLayer, MaskedLinear
from ..nn.lrn import LocalResponseNorm
from ..nn.norm import InstanceNorm
from ..nn.zoo import MaskedNetwork, option_a_shortcut


@dataclass(frozen=True)
class Conv:
    layer: str  # name of the MaskedConv2d in the model (its weights' key prefix)
    stride: int
    padding: int


@dataclass(frozen=True)
class Linear:
    layer: str


@dataclass(frozen=True)
class Elu:
    alpha: float = 1.0


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class LRN:
    size: int
    alpha: float
    beta: float
    k: float


@dataclass(frozen=True)
class MaxPool:
    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class Flatten:
    pass


Op = Conv | Linear | Elu | Relu | LRN | MaxPool | Flatten


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return isinstance(m, (MaskedLayer, LocalResponseNorm, InstanceNorm)) or super().is_leaf_module(m, qualname)


def trace_ops(model: MaskedNetwork, model_name: str = "model") -> list[Op]:
    """The forward pass of ``model`` as a list of ops (raises :class:`UserError` if unsupported)."""
    tracer = _Tracer(autowrap_functions=(F.elu, F.relu, F.max_pool2d))
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many kinds; all mean "this forward is not a plain chain"
        raise UserError(f"export cannot trace model {model_name!r}: {exc}") from None
    modules = dict(model.named_modules())
    _refuse_unsupported_structure(graph, modules, model_name)
    ops: list[Op] = []
    previous: fx.Node | None = None
    for node in graph.nodes:
        if node.op == "placeholder":
            previous = node
            continue
        if node.op == "output":
            if node.args[0] is not previous:
                raise UserError(f"export: model {model_name!r} does not return its last op's output")
            break
        if not node.args or node.args[0] is not previous:
            raise UserError(f"export: model {model_name!r} is not a single chain of ops at {node.name!r}")
        ops.append(_to_op(node, modules, model_name))
        previous = node
    if not ops or not isinstance(ops[-1], (Linear, Conv)):
        raise UserError(f"export: model {model_name!r} must end with a masked layer")
    return ops


_ADD_FUNCTIONS, _ADD_METHODS = (operator.add, operator.iadd, torch.add), ("add", "add_")


def _is_residual_add(node: fx.Node) -> bool:
    """An add of two computed tensors: two branches of the graph meeting (a residual connection)."""
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS
              or node.op == "call_method" and node.target in _ADD_METHODS)
    return is_add and sum(isinstance(arg, fx.Node) for arg in node.args) >= 2


def _refuse_unsupported_structure(graph: fx.Graph, modules: dict[str, torch.nn.Module], model_name: str) -> None:
    """One line naming what the model has that export does not support yet (residual adds, instance norm)."""
    adds = sum(_is_residual_add(node) for node in graph.nodes)
    shortcuts = sum(node.op == "call_function" and node.target is option_a_shortcut for node in graph.nodes)
    norms = sum(node.op == "call_module" and isinstance(modules[str(node.target)], InstanceNorm)
                or node.op == "call_function" and node.target is F.instance_norm for node in graph.nodes)
    missing = []
    if adds or shortcuts:
        missing.append(f"residual adds ({max(adds, shortcuts)} shortcut connections: the forward is not a single "
                       "chain of ops, and a residual add couples the channels of its two branches)")
    if norms:
        missing.append(f"instance norm ({norms} layers)")
    if missing:
        raise UserError(f"export does not support model {model_name!r} yet: it has {' and '.join(missing)}; "
                        "only chains of masked conv/linear, ELU, ReLU, LRN, max pooling and flatten export "
                        "(docs/algorithm.md#resnet20-cifar)")


def _unsupported(node: fx.Node, model_name: str, what: str = "") -> UserError:
    return UserError(f"export does not support {what or node.target!r} in model {model_name!r} (node {node.name})")


def _to_op(node: fx.Node, modules: dict[str, torch.nn.Module], model_name: str) -> Op:
    if node.op == "call_module":
        target = str(node.target)  # a module call's target is the module's qualified name
        m = modules[target]
        if isinstance(m, MaskedConv2d):
            return Conv(target, m.stride, m.padding)
        if isinstance(m, MaskedLinear):
            return Linear(target)
        if isinstance(m, LocalResponseNorm):
            return LRN(m.size, m.alpha, m.beta, m.k)
        raise _unsupported(node, model_name, type(m).__name__)
    args, kwargs = node.args, node.kwargs
    if node.target in (torch.flatten, "flatten") and node.op in ("call_function", "call_method"):
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        if start != 1 or end != -1:
            raise _unsupported(node, model_name, "flatten other than flatten(x, 1)")
        return Flatten()
    if node.op != "call_function":
        raise _unsupported(node, model_name, f"{node.op} {node.target}")
    if node.target is F.elu:
        alpha = kwargs.get("alpha", args[1] if len(args) > 1 else 1.0)
        if not isinstance(alpha, (int, float)):
            raise _unsupported(node, model_name, "elu with a computed alpha")
        return Elu(float(alpha))
    if node.target is F.relu:
        return Relu()
    if node.target is F.max_pool2d:
        params = dict(zip(("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"), args[1:]))
        params.update(kwargs)
        kernel, stride = params["kernel_size"], params.get("stride") or params["kernel_size"]
        padding = params.get("padding", 0)
        if params.get("dilation", 1) != 1 or params.get("ceil_mode") or params.get("return_indices"):
            raise _unsupported(node, model_name, "max_pool2d with dilation, ceil_mode or return_indices")
        if not (isinstance(kernel, int) and isinstance(stride, int) and isinstance(padding, int)):
            raise _unsupported(node, model_name, "max_pool2d with non-square kernel/stride/padding")
        return MaxPool(kernel, stride, padding)
    raise _unsupported(node, model_name)
