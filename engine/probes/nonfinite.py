"""Non-finite watch: the first layer, forward or backward, where a NaN or an inf appears.

Free per step: it reads the rows the rate probes write anyway into the step ring
(`step_ring.py`): per watched layer the per-neuron max |y| of its outputs (NaN and inf
propagate through the max), per Linear/Conv layer its bias gradient (or its rows' max |g|);
a NaN in the per-sample errors reaches both a layer's weight and bias gradients. Nothing is
checked or read back while training runs.

Only when the training loop has found a non-finite loss (it checks every 32 steps) does
`first_nonfinite` read the ring's rows back and look for the first step with a non-finite
value, and in it the first span in search order: activation outputs in forward order, then
gradients in backward order (from the output towards the input). Once a step went
non-finite the weights are non-finite and every later step is too, so that first step is
the one that matters; the ring (64 steps) reaches back to it. A non-finite pre-activation
(a Linear layer's output) shows up in the activation it feeds, which passes NaN on; the
logits are not watched: a non-finite loss with finite activations shows up in the output
layer's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Span:
    """Where one watched place sits in a row: `label` is e.g. "act2 (forward)"."""

    label: str
    start: int
    stop: int


def first_nonfinite(rows: torch.Tensor | None, spans: tuple[Span, ...]) -> str | None:
    """The label of the first non-finite value: first row (oldest step) first, then the
    spans in the order given; None when every value is finite."""
    if rows is None or rows.numel() == 0:
        return None
    bad = ~torch.isfinite(rows.detach().float().cpu())
    steps = bad.any(1).nonzero()
    if steps.numel() == 0:
        return None
    row = bad[int(steps[0])]
    for span in spans:
        if bool(row[span.start:span.stop].any()):
            return span.label
    return "unknown layer"
