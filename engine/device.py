"""Pick the device to train on: cuda, then mps, then cpu, unless the user named one."""

from __future__ import annotations

import torch

from .errors import ConfigError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def resolve_device(name: str = "auto") -> torch.device:
    """The best available device for "auto"; a ConfigError when a named one is missing."""
    if name not in DEVICE_CHOICES:
        raise ConfigError(f"device {name!r}: must be one of {', '.join(DEVICE_CHOICES)}")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ConfigError("run.device = 'cuda': no CUDA device is available here; use 'auto' or 'cpu'")
    if name == "mps" and not mps:
        raise ConfigError("run.device = 'mps': no Apple MPS device is available here; use 'auto' or 'cpu'")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """A short human label, e.g. 'cuda (NVIDIA H100)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def host_copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors on the CPU, detached, copied from an accelerator in one transfer per dtype.

    Each `.cpu()` of a device tensor is a host sync (a checkpoint of this MLP and its optimizer
    would be a dozen): the tensors of one dtype are packed into one device buffer, copied once
    and cut back into independent CPU tensors. CPU tensors are returned detached, not copied.
    """
    out: dict[str, torch.Tensor] = {}
    groups: dict[tuple[torch.dtype, torch.device], list[str]] = {}
    for key, tensor in tensors.items():
        if tensor.device.type == "cpu":
            out[key] = tensor.detach()
        else:
            groups.setdefault((tensor.dtype, tensor.device), []).append(key)
    for keys in groups.values():
        flat = torch.cat([tensors[k].detach().reshape(-1) for k in keys]).cpu()
        offset = 0
        for k in keys:
            n = tensors[k].numel()
            out[k] = flat[offset:offset + n].view(tensors[k].shape).clone()
            offset += n
    return {key: out[key] for key in tensors}
