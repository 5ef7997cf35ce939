"""Non-finite watch: the first layer, forward or backward, where a NaN or an inf appears.

Cheap by design: per step, each watched module's output is summed on the device (a sum is
non-finite when any term is; an overflowing sum counts too, which only matters when the run
is diverging anyway) and each weight gradient's norm comes from the gradient probe. At the
end of the step one small tensor holds "non-finite?" per watched place; the mask of the
first step that had any is frozen on the device. Nothing is read back until the training
loop has found a non-finite loss and asks `first()`.
"""

from __future__ import annotations

import torch


class NonFiniteWatch:
    """Device flags per watched output (forward order) and per weight gradient (backward)."""

    def __init__(self, forward_names: list[str], backward_names: list[str]) -> None:
        self.forward_names = list(forward_names)
        self.backward_names = list(backward_names)
        self._sums: list[torch.Tensor | None] = [None] * len(self.forward_names)
        self._grads: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None  # first bad step's mask (forward + backward)
        self._found: torch.Tensor | None = None  # () bool: a bad step was seen

    def observe_forward(self, index: int, output: torch.Tensor) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            self._sums[index] = output.detach().sum(dtype=torch.float32)

    def observe_backward(self, grad_values: torch.Tensor) -> None:
        """One value per weight gradient, in `backward_names` order (e.g. its L1 norm),
        non-finite when the gradient is."""
        self._grads = grad_values.detach().reshape(-1).float()

    def end_step(self) -> None:
        """Fold this step's observations into the first-bad-step mask (device only)."""
        parts = [s for s in self._sums if s is not None]
        if not parts and self._grads is None:
            return
        device = (parts[0] if parts else self._grads).device
        zero = torch.zeros((), device=device)
        values = [s if s is not None else zero for s in self._sums]
        forward = torch.stack(values) if values else torch.zeros(0, device=device)
        backward = self._grads if self._grads is not None else torch.zeros(len(self.backward_names), device=device)
        bad = ~torch.isfinite(torch.cat([forward, backward]))
        if self._mask is None:
            self._mask, self._found = bad, bad.any()
        else:
            self._mask = torch.where(self._found, self._mask, bad)
            self._found = self._found | bad.any()
        self._sums = [None] * len(self.forward_names)
        self._grads = None

    def first(self) -> str | None:
        """`"<layer> (forward)"` or `"<layer> (backward)"` of the first non-finite value, or None."""
        if self._mask is None:
            return None
        mask = self._mask.cpu().tolist()
        nf = len(self.forward_names)
        for bad, name in zip(mask[:nf], self.forward_names):
            if bad:
                return f"{name} (forward)"
        # backward runs from the output towards the input: the last layer's gradient comes first
        for bad, name in reversed(list(zip(mask[nf:], self.backward_names))):
            if bad:
                return f"{name} (backward)"
        return None

    def reset(self) -> None:
        self._mask = self._found = None
        self._sums = [None] * len(self.forward_names)
        self._grads = None
