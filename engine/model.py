"""The lab's multilayer perceptron, built from a frozen config alone.

Activation modules live in named slots (`act1`, `act2`, ...) inside `model.layers`, so a
probe can find them by name and the app can replace them in place (hot swap) while the
Linear weights stay the same objects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .activations import create_activation


@dataclass(frozen=True)
class MLPConfig:
    input_size: int = 784  # flattened input features (28x28 images)
    num_classes: int = 10  # output logits
    hidden_sizes: tuple[int, ...] = (512, 256, 256, 128)  # one Linear + activation each
    activation: str = "relu"  # registry name (aliases resolved by the registry)
    activation_config: dict[str, Any] = field(default_factory=dict)  # its hyper-parameters
    dropout: float = 0.0  # dropout after each hidden activation (0 = none)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MLPConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        if "hidden_sizes" in data:
            data["hidden_sizes"] = tuple(int(h) for h in data["hidden_sizes"])
        return cls(**data)


class MLP(nn.Module):
    """flatten -> [Linear -> activation (-> dropout)] x len(hidden) -> Linear."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        layers: dict[str, nn.Module] = {}
        width = config.input_size
        for i, hidden in enumerate(config.hidden_sizes, 1):
            layers[f"fc{i}"] = nn.Linear(width, hidden)
            layers[f"act{i}"] = create_activation(config.activation, **config.activation_config)
            if config.dropout > 0:
                layers[f"drop{i}"] = nn.Dropout(config.dropout)
            width = hidden
        layers["out"] = nn.Linear(width, config.num_classes)
        self.layers = nn.Sequential()
        for name, module in layers.items():
            self.layers.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))

    def activation_slots(self) -> list[str]:
        """Names of the activation modules, first hidden layer first."""
        return [f"act{i}" for i in range(1, len(self.config.hidden_sizes) + 1)]

    def swap_activation(self, name: str, **activation_config: Any) -> None:
        """Replace every activation module in place; Linear weights are untouched.

        The new modules are moved to the device and dtype of the first Linear layer.
        """
        reference = self.layers.fc1.weight
        for slot in self.activation_slots():
            module = create_activation(name, **activation_config).to(reference.device)
            setattr(self.layers, slot, module)
        canonical = getattr(self.layers, self.activation_slots()[0]).name
        self.config = dataclasses.replace(self.config, activation=canonical,
                                          activation_config=dict(activation_config))


def build_model(config: MLPConfig, seed: int | None = None) -> MLP:
    """The MLP; with a seed, torch's global RNG is seeded first (the reference's recipe)."""
    if seed is not None:
        torch.manual_seed(seed)
    return MLP(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
