"""Which modules of a model the probes watch, found by type, named the way reports show them.

- activation layers: the registry's `Activation` modules and torch's elementwise activations
  (`nn.ReLU`, `nn.Tanh`, ...); each is paired with the Linear/Conv layer that feeds it (the
  last one registered before it), whose weight rows are its neurons' incoming weights;
- dropout layers (`nn.Dropout` and friends), watched for output rates as monitorch does;
- parameter layers: `nn.Linear` and `nn.Conv1d/2d/3d` (their weight gradients and drift).

Names are the module paths with a leading `layers.` removed, so the lab's MLP reports
`act1`, `fc1`, `out` and any other model its own paths (`features.0`, `classifier.fc`).
Modules are listed in registration order, which is the forward order of a Sequential.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

#: torch's elementwise activation modules (Softmax & co. are not elementwise: left out)
TORCH_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign,
    nn.LogSigmoid, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold,
)
DROPOUTS: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd,)
PARAM_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _registry_base() -> tuple[type[nn.Module], ...]:
    try:
        from ..activations import Activation
    except ImportError:  # registry not importable: torch's classes still work
        return ()
    return (Activation,)


def short_name(path: str) -> str:
    """`layers.act1` -> `act1`; other paths unchanged."""
    return path[len("layers."):] if path.startswith("layers.") else path


def is_activation(module: nn.Module) -> bool:
    return isinstance(module, _registry_base() + TORCH_ACTIVATIONS)


@dataclass(frozen=True, eq=False)
class Layer:
    name: str  # short name, e.g. "act1", "fc1", "drop2"
    module: nn.Module
    kind: str  # "activation", "dropout" or "param"
    source: "Layer | None" = None  # activations: the Linear/Conv layer feeding it, if any

    @property
    def size(self) -> int | None:
        """Neurons (output features or channels) of a param layer or of an activation's source."""
        m = self.module if self.kind == "param" else (self.source.module if self.source else None)
        if isinstance(m, nn.Linear):
            return m.out_features
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.out_channels
        return None


@dataclass(frozen=True)
class LayerMap:
    activations: tuple[Layer, ...]
    dropouts: tuple[Layer, ...]
    params: tuple[Layer, ...]
    ordered: tuple[Layer, ...]  # all of them, in registration (forward) order

    @property
    def paired_params(self) -> dict[str, str]:
        """param layer name -> the activation layer it feeds."""
        return {a.source.name: a.name for a in self.activations if a.source is not None}


def find_layers(model: nn.Module) -> LayerMap:
    """The watched layers of any model, in registration order (see the module doc)."""
    activation_types = _registry_base() + TORCH_ACTIVATIONS
    activations: list[Layer] = []
    dropouts: list[Layer] = []
    params: list[Layer] = []
    ordered: list[Layer] = []
    pending: Layer | None = None  # the last param layer not yet paired with an activation
    skip: tuple[str, ...] = ()  # do not look inside a matched module (a wrapper's inner ReLU)
    for path, module in model.named_modules():
        if not path or (skip and path.startswith(skip)):
            continue
        name = short_name(path)
        if isinstance(module, activation_types):
            layer = Layer(name, module, "activation", pending)
            activations.append(layer)
            pending = None
        elif isinstance(module, DROPOUTS):
            layer = Layer(name, module, "dropout")
            dropouts.append(layer)
        elif isinstance(module, PARAM_LAYERS) and not isinstance(module.weight, nn.parameter.UninitializedParameter):
            layer = pending = Layer(name, module, "param")
            params.append(layer)
        else:
            continue
        ordered.append(layer)
        skip = skip + (path + ".",)
    return LayerMap(tuple(activations), tuple(dropouts), tuple(params), tuple(ordered))
