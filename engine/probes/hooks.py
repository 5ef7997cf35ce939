"""Hook bookkeeping: every handle a probe registers is kept and removed again.

`HookRegistry` is a context manager (Lightning's `LayerSummary`, timm's `FeatureHooks`):
hooks live exactly as long as the `with` block, or until `remove()`. `hook_count(model)`
counts the hooks left on a model, so tests can assert that none were left behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

if TYPE_CHECKING:
    from .watched import Layer

ForwardHook = Callable[[nn.Module, tuple[Any, ...], Any], None]


class HookRegistry:
    """Registers module hooks, keeps their handles, removes them all on exit.

    >>> with HookRegistry() as hooks:
    ...     hooks.forward(model.layers.act1, fn)   # doctest: +SKIP
    ...     model(x)                                # doctest: +SKIP
    >>> # every hook is gone here
    """

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def forward(self, module: nn.Module, fn: ForwardHook) -> RemovableHandle:
        """`fn(module, inputs, output)` after each forward of `module`."""
        handle = module.register_forward_hook(fn)
        self._handles.append(handle)
        return handle

    def remove(self) -> None:
        """Remove every hook registered here (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __len__(self) -> int:
        return len(self._handles)

    def __enter__(self) -> "HookRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def hook_count(model: nn.Module) -> int:
    """Module hooks of every kind currently registered anywhere in `model`."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, kind, None) or {}) for m in model.modules() for kind in kinds)


def inspect_pass(model: nn.Module, x: torch.Tensor, layers: Iterable[Layer],
                 fn: Callable[[Layer, torch.Tensor, torch.Tensor, int], None], *,
                 batch_size: int = 8192, rows: int | None = None) -> None:
    """Run `model` over `x[:rows]` in eval mode without gradients, calling
    `fn(layer, layer_input, layer_output, first_row)` for each watched layer and chunk.

    The hooks exist only during the pass; the model's train/eval mode is restored after.
    Eval mode means dropout is off, so the pass draws no random numbers.
    """
    n = x.shape[0] if rows is None else min(rows, x.shape[0])
    was_training = model.training
    offset = [0]
    model.eval()
    try:
        with HookRegistry() as hooks, torch.no_grad():
            for layer in layers:
                hooks.forward(layer.module, _bind(fn, layer, offset))
            for start in range(0, n, batch_size):
                offset[0] = start
                model(x[start:min(n, start + batch_size)])
    finally:
        model.train(was_training)


def _bind(fn, layer, offset):
    def hook(module, inputs, output):
        fn(layer, inputs[0] if inputs else None, output, offset[0])
    return hook
