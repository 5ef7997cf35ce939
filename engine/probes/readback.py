"""Reading probe accumulators back from the device in one go.

Probes accumulate on the model's device; a report needs their values on the host. Each
`.item()` would be a device sync, so `read_back` concatenates all tensors of one dtype and
copies each group once (one sync per dtype, usually two: integer counts and float sums).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Mapping, TypeVar

import torch

K = TypeVar("K", bound=Hashable)


def float_accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 sums where the device has them (MPS has no float64: float32 there)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def read_back(tensors: Mapping[K, torch.Tensor]) -> dict[K, torch.Tensor]:
    """The same tensors on the CPU, copied with one transfer per dtype."""
    groups: dict[torch.dtype, list[K]] = defaultdict(list)
    for key, tensor in tensors.items():
        groups[tensor.dtype].append(key)
    out: dict[K, torch.Tensor] = {}
    for keys in groups.values():
        flat = torch.cat([tensors[k].detach().reshape(-1) for k in keys]).cpu()
        offset = 0
        for k in keys:
            n = tensors[k].numel()
            out[k] = flat[offset:offset + n].reshape(tensors[k].shape)
            offset += n
    return out
