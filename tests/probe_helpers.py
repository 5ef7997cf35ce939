"""Small models and a hand-written training loop shared by the probe tests."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


def relu_mlp(sizes=(20, 32, 24, 16), classes=3, seed=0, dead=None) -> nn.Module:
    """Sequential Linear/ReLU stack named like the lab's MLP (`layers.fc1`, `layers.act1`, ...).

    `dead` maps a hidden layer index (1-based) to the neuron indices whose bias is set to
    -1e4: with inputs in [-1, 1] those neurons are dead by construction.
    """
    torch.manual_seed(seed)
    layers = nn.Sequential()
    for i in range(1, len(sizes)):
        layers.add_module(f"fc{i}", nn.Linear(sizes[i - 1], sizes[i]))
        layers.add_module(f"act{i}", nn.ReLU())
    layers.add_module("out", nn.Linear(sizes[-1], classes))
    with torch.no_grad():
        for i, idx in (dead or {}).items():
            getattr(layers, f"fc{i}").bias[list(idx)] = -1e4
    model = nn.Module()
    model.layers = layers
    model.forward = lambda x: layers(x)  # type: ignore[method-assign]
    return model


class SmallCNN(nn.Module):
    """The monitorch notebook's kind of MNIST CNN, with dropout; takes flattened 8x8 inputs."""

    def __init__(self, dropout=(0.5, 0.5, 0.2)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.drop1 = nn.Dropout(dropout[0])
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.drop2 = nn.Dropout(dropout[1])
        self.dense1 = nn.Linear(16 * 4 * 4, 32)
        self.relu3 = nn.ReLU()
        self.drop3 = nn.Dropout(dropout[2])
        self.dense2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 8, 8)
        x = self.drop1(self.relu1(self.conv1(x)))
        x = F.max_pool2d(self.drop2(self.relu2(self.conv2(x))), 2)
        x = self.drop3(self.relu3(self.dense1(x.flatten(1))))
        return self.dense2(x)


def splits(x: torch.Tensor, y: torch.Tensor) -> SimpleNamespace:
    """The parts of DataSplits the probes read."""
    return SimpleNamespace(train_x=x, train_y=y, val_x=x[:0], val_y=y[:0])


def train_epoch(model, probes, x, y, *, batch_size, lr=0.0, epoch=1, momentum=0.0, on_batch=None, tell_steps=True):
    """One epoch of the lab's loop over x in order (drop_last), calling the probe hooks
    (`tell_steps=False`: without saying how many steps the epoch has)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum) if lr else None
    model.train()
    steps = x.shape[0] // batch_size
    if tell_steps:
        probes.epoch_start(epoch, steps)
    else:
        probes.epoch_start(epoch)
    for b in range(steps):
        xb, yb = x[b * batch_size:(b + 1) * batch_size], y[b * batch_size:(b + 1) * batch_size]
        loss = F.cross_entropy(model(xb), yb)
        model.zero_grad(set_to_none=True)
        loss.backward()
        probes.after_backward(model)
        if opt is not None:
            opt.step()
        probes.after_step(model)
        if on_batch is not None:
            on_batch(b)
