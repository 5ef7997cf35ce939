"""Which modules of a model the probes watch, found by type, named the way reports show them.

- activation layers: the registry's `Activation` modules and torch's elementwise activations
  (`nn.ReLU`, `nn.Tanh`, ...); each is paired with the Linear/Conv layer that feeds it (the
  last one registered before it), whose weight rows are its neurons' incoming weights;
- dropout layers (`nn.Dropout` and friends), watched for output rates as monitorch does;
- linear layers: `nn.Linear` and `nn.Conv1d/2d/3d` (their weight gradients and drift).

Names are the module paths with a leading `layers.` removed, so the lab's MLP reports
`act1`, `fc1`, `out` and any other model its own paths (`features.0`, `classifier.fc`).
Modules are listed in registration order, which is the forward order of a Sequential.
Each layer's kind is one of `metrics.LAYER_KINDS`; `LayerMap.kinds` is what `LayerStats.kinds`
carries, so no reader parses layer names.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .. import metrics
from ..activations import Activation

#: torch's elementwise activation modules (Softmax & co. are not elementwise: left out)
TORCH_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign,
    nn.LogSigmoid, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold,
)
ACTIVATIONS: tuple[type[nn.Module], ...] = (Activation, *TORCH_ACTIVATIONS)
DROPOUTS: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                                         nn.FeatureAlphaDropout)
LINEARS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

_TORCH_NAMES = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu"}
#: activations whose outputs are never negative: their per-neuron max needs no abs
NONNEGATIVE = frozenset({"relu", "relu6", "sigmoid", "softplus", "hardsigmoid"})
#: activations with f(z) = 0 exactly when z <= 0 and finite for any finite z: the per-neuron
#: max of their input z tells both whether the neuron was dead on the batch (max z <= 0) and
#: whether the Linear/Conv layer feeding it produced a NaN or +inf, in one reduction
INPUT_JUDGED = frozenset({"relu", "relu6"})


def activation_kind(module: nn.Module) -> str:
    """The registry name of an activation module, or a torch class's equivalent, or ''."""
    name = getattr(module, "name", None)
    if isinstance(name, str):
        return name
    return _TORCH_NAMES.get(type(module), "")


def short_name(path: str) -> str:
    """`layers.act1` -> `act1`; other paths unchanged."""
    return path[len("layers."):] if path.startswith("layers.") else path


@dataclass(frozen=True, eq=False)
class Layer:
    name: str  # short name, e.g. "act1", "fc1", "drop2"
    module: nn.Module
    kind: str  # metrics.ACTIVATION, metrics.DROPOUT or metrics.LINEAR
    source: "Layer | None" = None  # activations: the Linear/Conv layer feeding it, if any

    @property
    def size(self) -> int | None:
        """Neurons (output features or channels) of a linear layer or of an activation's source."""
        m = self.module if self.kind == metrics.LINEAR else (self.source.module if self.source else None)
        if isinstance(m, nn.Linear):
            return m.out_features
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.out_channels
        return None

    @property
    def nonnegative(self) -> bool:
        """Outputs never below zero (ReLU, sigmoid, ...): per-neuron maxima need no abs."""
        return self.kind == metrics.ACTIVATION and activation_kind(self.module) in NONNEGATIVE

    @property
    def judged_by_input(self) -> bool:
        """ReLU-like: dead on a batch exactly when max z <= 0 (see INPUT_JUDGED)."""
        return self.kind == metrics.ACTIVATION and activation_kind(self.module) in INPUT_JUDGED


@dataclass(frozen=True)
class LayerMap:
    activations: tuple[Layer, ...]
    dropouts: tuple[Layer, ...]
    linears: tuple[Layer, ...]
    ordered: tuple[Layer, ...]  # all of them, in registration (forward) order

    @property
    def paired_linears(self) -> dict[str, str]:
        """linear layer name -> the activation layer it feeds."""
        return {a.source.name: a.name for a in self.activations if a.source is not None}

    @property
    def kinds(self) -> dict[str, str]:
        """layer name -> metrics.LINEAR / ACTIVATION / DROPOUT (what `LayerStats.kinds` holds)."""
        return {layer.name: layer.kind for layer in self.ordered}


def find_layers(model: nn.Module) -> LayerMap:
    """The watched layers of any model, in registration order (see the module doc)."""
    activations: list[Layer] = []
    dropouts: list[Layer] = []
    linears: list[Layer] = []
    ordered: list[Layer] = []
    pending: Layer | None = None  # the last linear layer not yet paired with an activation
    skip: tuple[str, ...] = ()  # do not look inside a matched module (a wrapper's inner ReLU)
    for path, module in model.named_modules():
        if not path or (skip and path.startswith(skip)):
            continue
        name = short_name(path)
        if isinstance(module, ACTIVATIONS):
            layer = Layer(name, module, metrics.ACTIVATION, pending)
            activations.append(layer)
            pending = None
        elif isinstance(module, DROPOUTS):
            layer = Layer(name, module, metrics.DROPOUT)
            dropouts.append(layer)
        elif isinstance(module, LINEARS) and not isinstance(module.weight, nn.parameter.UninitializedParameter):
            layer = pending = Layer(name, module, metrics.LINEAR)
            linears.append(layer)
        else:
            continue
        ordered.append(layer)
        skip = skip + (path + ".",)
    return LayerMap(tuple(activations), tuple(dropouts), tuple(linears), tuple(ordered))
