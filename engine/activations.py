"""Activation functions: a name -> class registry, the modules, and plain reference formulas.

The registry works like timm's `create_act`: canonical names in the lab's order, a few
aliases (`silu` -> `swish`, `linear` -> `identity`; case, `-`, `_` and spaces are ignored),
and `create_activation(name, **config)` returning a fresh module. Unlike timm, a wrong name or
config key is an error whose one-line message says what is allowed.

Every module carries `name`, `formula` and a JSON-able `config`, so a checkpoint can rebuild it
with `create_activation(m.name, **m.config)`.

TanhExp and Mish use custom autograd functions because the straightforward versions cost
~20-30 % of a small MLP's training step on CPU. Both are built from `sigmoid` (a fast
vectorised kernel) and cheap arithmetic, not from `tanh`/`exp`/`softplus` (each 2-5x slower
than `sigmoid` on CPU), and the forward pass computes the derivative as well so that backward
is one multiply. What is saved for backward is one tensor the size of the input, as in timm's
`activations_me` (which saves the input and recomputes). Double backward is not supported.
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .errors import UserError

__all__ = [
    "Activation",
    "ActivationConfigError",
    "ActivationInfo",
    "UnknownActivationError",
    "activation_info",
    "activation_names",
    "canonical_name",
    "create_activation",
    "reference_formula",
]


class UnknownActivationError(UserError, ValueError):
    """An activation name that is neither a canonical name nor an alias."""


class ActivationConfigError(UserError, ValueError):
    """An unknown config key, or a value outside what the activation allows."""


# --------------------------------------------------------------------------- config checks


def _number(act: str, key: str, value: Any, *, minimum: float | None = None,
            strict: bool = False) -> float:
    """Return `value` as a float, or raise naming the activation, the key and what is allowed."""
    allowed = "a finite number"
    if minimum is not None:
        allowed += f" {'>' if strict else '>='} {minimum:g}"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        raise ActivationConfigError(f"{act}: {key} must be {allowed}, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- base class


class Activation(nn.Module):
    """Base class: an elementwise activation with a name, a formula and a JSON-able config.

    Subclasses set the class attributes. Each key of `defaults` becomes an attribute of the
    same name (what `config` reads back); a number is checked against `bounds` (key ->
    (minimum, strict); a key not there takes any finite number). A subclass that is one torch
    function of x and its config, in the order of `defaults`, sets `function` and needs no
    `forward` of its own.
    """

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    bounds: ClassVar[dict[str, tuple[float, bool]]] = {}
    sparse: ClassVar[bool] = False  # outputs exact zeros for a whole range of inputs
    smooth: ClassVar[bool] = True  # continuously differentiable: the slope never jumps
    function: ClassVar[Callable[..., Tensor] | None] = None

    def __init__(self, **config: Any) -> None:
        super().__init__()
        unknown = sorted(set(config) - set(self.defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected config {', '.join(unknown)}")
        for key, default in self.defaults.items():
            value = config.get(key, default)
            if isinstance(default, float):
                minimum, strict = self.bounds.get(key, (None, False))
                value = _number(self.name, key, value, minimum=minimum, strict=strict)
            setattr(self, key, value)
        self.arguments = tuple(self.config.values())

    @property
    def config(self) -> dict[str, Any]:
        """The hyper-parameters, e.g. `{"alpha": 0.1}`; `{}` when there are none."""
        return {key: getattr(self, key) for key in self.defaults}

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.config.items())

    def forward(self, x: Tensor) -> Tensor:
        function = type(self).function
        if function is None:
            raise NotImplementedError(f"{type(self).__name__} sets neither function nor forward")
        return function(x, *self.arguments)


# --------------------------------------------------------------------------- simple activations


class Sigmoid(Activation):
    """Logistic sigmoid; its slope is at most 1/4, so gradients vanish through depth."""

    name = "sigmoid"
    formula = "1 / (1 + e^-x)"
    function = torch.sigmoid


class Tanh(Activation):
    """Hyperbolic tangent (the textbook exp ratio is inf/inf for x > ~88). torch's kernel,
    except on CPU, where it is computed as 2 sigmoid(2x) - 1 (see `_tanh_cpu`)."""

    name = "tanh"
    formula = "(e^x - e^-x) / (e^x + e^-x)"

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return torch.tanh(x)
        if x.requires_grad and torch.is_grad_enabled():
            return _TanhCPUFunction.apply(x)
        return _tanh_cpu(x)


def _tanh_cpu(x: Tensor) -> Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1. PyTorch's CPU tanh kernel costs ~6x its sigmoid (340 vs
    56 us on 256x512 float32, one AVX-512 core), enough to make a tanh network's epoch ~15 %
    slower than ReLU's; this form costs ~95 us. Its absolute error is ~1 ulp of 1 (~1e-7 in
    float32), so for |x| << 1 the relative error is larger than torch.tanh's."""
    xw = _wide(x)
    return torch.sigmoid(xw * 2).mul_(2).sub_(1).to(x.dtype)


class _TanhCPUFunction(torch.autograd.Function):
    """The derivative comes from s = sigmoid(2x) as 4 s (1 - s), not from 1 - y^2: y rounds to
    -1 below x ~ -9 in float32, where 1 - y^2 would be exactly 0 and s is still exact."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        s = torch.sigmoid(_wide(x) * 2)
        ctx.save_for_backward(s)
        return torch.mul(s, 2).sub_(1).to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (s,) = ctx.saved_tensors
        return _sigmoid_backward(grad * 4, s).to(grad.dtype)  # grad * 4 s (1 - s)


class ReLU(Activation):
    """max(x, 0): zero output and zero gradient for x <= 0, hence dead neurons."""

    name = "relu"
    formula = "max(x, 0)"
    sparse, smooth = True, False
    function = F.relu


class LeakyReLU(Activation):
    """ReLU with slope `alpha` for x < 0; the tutorials use 0.1, not torch's 0.01."""

    name = "leakyrelu"
    formula = "x if x > 0 else alpha * x"
    defaults = {"alpha": 0.1}
    bounds = {"alpha": (0.0, False)}
    smooth = False
    function = F.leaky_relu


class PReLU(Activation):
    """Leaky ReLU whose negative slope is one learned scalar, initialised to `init`.

    `config` reports the initial value (what rebuilds the module); the learned slope lives
    in `weight` and travels with the state_dict.
    """

    name = "prelu"
    formula = "x if x > 0 else a * x  (a learned, starts at init)"
    defaults = {"init": 0.1}
    smooth = False

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.weight = nn.Parameter(torch.full((1,), self.init))

    def forward(self, x: Tensor) -> Tensor:
        # .to() is a no-op for float32 input and keeps bfloat16/float64 input working.
        weight = self.weight.to(x.dtype)
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            return _PReLUFunction.apply(x, weight)
        return F.prelu(x, weight)


class _PReLUFunction(torch.autograd.Function):
    """F.prelu's forward with a backward of four cheap passes. PyTorch's own prelu backward
    reduces the slope's gradient with a slow generic kernel (~4x the cost of this one on CPU,
    enough to make a PReLU network's epoch ~15 % slower than ReLU's). Same gradients: the
    input's exactly, the slope's up to the order of summation."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return F.prelu(x, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        positive = torch.ops.aten.threshold_backward(grad, x, 0)  # grad where x > 0, else 0
        negative = grad - positive  # grad where x <= 0, else 0
        grad_x = torch.addcmul(positive, negative, weight) if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:  # d/da of a * x summed over x <= 0
            grad_weight = torch.dot(negative.reshape(-1), x.reshape(-1)).reshape(weight.shape)
        return grad_x, grad_weight


class ELU(Activation):
    """x for x > 0, alpha (e^x - 1) below; torch's kernel avoids the NaN gradients of the
    naive `where(x > 0, x, exp(x) - 1)` (0 * inf) for large x. Continuously differentiable
    only at the default alpha = 1."""

    name = "elu"
    formula = "x if x > 0 else alpha * (e^x - 1)"
    defaults = {"alpha": 1.0}
    bounds = {"alpha": (0.0, False)}
    function = F.elu


_GELU_FORMULAS = {
    "tanh": "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
    "none": "0.5 x (1 + erf(x / sqrt(2)))",
}


class GELU(Activation):
    """Gaussian error linear unit; the tanh approximation by default, as in the tutorials."""

    name = "gelu"
    formula = _GELU_FORMULAS["tanh"]
    defaults = {"approximate": "tanh"}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.approximate not in _GELU_FORMULAS:
            allowed = " or ".join(repr(key) for key in _GELU_FORMULAS)
            raise ActivationConfigError(
                f"{self.name}: approximate must be {allowed}, got {self.approximate!r}")
        self.formula = _GELU_FORMULAS[self.approximate]  # type: ignore[misc]  # per instance

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)


class Swish(Activation):
    """x * sigmoid(x) (SiLU): smooth and non-monotonic; one fused kernel each way."""

    name = "swish"
    formula = "x * sigmoid(x)"
    function = F.silu


class Identity(Activation):
    """No activation: the linear baseline (the network collapses to one linear map)."""

    name = "identity"
    formula = "x"

    def forward(self, x: Tensor) -> Tensor:
        return x


class SELU(Activation):
    """Scaled ELU with the fixed constants that make activations self-normalising."""

    name = "selu"
    formula = "1.0507 * (x if x > 0 else 1.6733 * (e^x - 1))"
    smooth = False
    function = F.selu


class CELU(Activation):
    """ELU rescaled so that it is continuously differentiable for every alpha > 0."""

    name = "celu"
    formula = "x if x > 0 else alpha * (e^(x / alpha) - 1)"
    defaults = {"alpha": 1.0}
    bounds = {"alpha": (0.0, True)}
    function = F.celu


class Softplus(Activation):
    """Smooth ReLU; torch switches to x where beta * x > threshold (exp would overflow)."""

    name = "softplus"
    formula = "ln(1 + e^(beta x)) / beta"
    defaults = {"beta": 1.0, "threshold": 20.0}
    bounds = {"beta": (0.0, True), "threshold": (0.0, True)}
    function = F.softplus


class Softsign(Activation):
    """x / (1 + |x|): like tanh but with polynomial (slower) saturation."""

    name = "softsign"
    formula = "x / (1 + |x|)"
    function = F.softsign


class LogSigmoid(Activation):
    """log(sigmoid(x)), computed stably (the naive form is -inf for x < ~-88 in float32)."""

    name = "logsigmoid"
    formula = "-ln(1 + e^-x)"
    function = F.logsigmoid


class ReLU6(Activation):
    """ReLU capped at 6 (mobile networks); zero output and gradient for x <= 0."""

    name = "relu6"
    formula = "min(max(x, 0), 6)"
    sparse, smooth = True, False
    function = F.relu6


class Hardtanh(Activation):
    """Piecewise-linear tanh: clamps to [min_val, max_val]."""

    name = "hardtanh"
    formula = "min(max(x, min_val), max_val)"
    defaults = {"min_val": -1.0, "max_val": 1.0}
    smooth = False
    function = F.hardtanh

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if not self.min_val < self.max_val:
            raise ActivationConfigError(
                f"{self.name}: min_val must be < max_val, got min_val={self.min_val:g}, "
                f"max_val={self.max_val:g}")


class Hardswish(Activation):
    """Piecewise approximation of swish; exactly zero for x <= -3."""

    name = "hardswish"
    formula = "x * min(max(x + 3, 0), 6) / 6"
    sparse, smooth = True, False
    function = F.hardswish


# --------------------------------------------------------------------------- TanhExp and Mish
#
# Shared pattern: a kernel `f(x, need_grad)` returns the output and, when asked, a tensor from
# which the backward pass gets the input gradient with one elementwise op. The module calls
# the autograd Function only when a gradient is needed; in eval / no_grad it runs the cheaper
# forward alone. float16/bfloat16 are computed in float32 (the identities below cancel badly
# with 8 mantissa bits) and rounded back.

_sigmoid_backward = torch.ops.aten.sigmoid_backward  # grad * s * (1 - s), one kernel
_tanh_backward = torch.ops.aten.tanh_backward  # grad * (1 - t^2), one kernel

# tanh(e^x) is exactly 1 in float32 and float64 once x > ~3.7, so clamping x at 9 before the
# exponential changes no output, keeps 2 e^x finite (no inf * 0 = NaN in the derivative, even
# in float16 where e^9 = 8103 still fits) and makes the output x and the derivative exactly 1
# for large x, as the reference's overflow guard (clamp at 20) does.
_TANHEXP_CLAMP = 9.0
# Below these inputs tanh(u), u = e^x, comes from its series u - u^3/3 (relative error
# 2u^4/15: 8e-7 at x = -3, 2e-15 at x = -8) instead of 1 - 2 sigmoid(-2u), whose absolute error
# (half an ulp of 0.5) is a large relative error once tanh(u) ~ u is small.
_TANHEXP_TAIL = {torch.float32: -3.0, torch.float64: -8.0}


def _wide(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _tanhexp(x: Tensor, need_grad: bool) -> tuple[Tensor, Tensor | None]:
    """x * tanh(e^x), and its derivative d.

    With u = e^x: tanh(u) = 1 - 2 sigmoid(-2u) (a sigmoid and cheap arithmetic instead of
    tanh, which costs ~5 sigmoids on CPU) where tanh(u) is not small, and u - u^3/3 in the
    tail (x < -3 in float32), where the sigmoid form cancels: there it used to round to exactly
    0 below x ~ -16, so TanhExp units looked dead. Float32 results stay within a relative 1e-5
    of a float64 reference on [-30, 30], derivatives likewise (apart from the
    derivative's root near x = -1.1, where the error is a few float32 ulps of its terms), and
    finite on [-1e4, 1e4]. d/dx = tanh(u) + x u (1 - tanh(u)^2) = t - 2 x v sn (1 - sn) with
    v = -2u, sn = sigmoid(v).
    """
    xw = _wide(x)
    tail_mask = xw < _TANHEXP_TAIL.get(xw.dtype, -3.0)
    e = torch.clamp(xw, max=_TANHEXP_CLAMP).exp_()  # u
    buffer = e.square()
    tail = torch.addcmul(e, e, buffer, value=-1.0 / 3, out=buffer)  # u - u^3 / 3
    v = e.mul_(-2.0)  # -2u (e's buffer reused)
    sn = torch.sigmoid(v)
    t = torch.rsub(sn, 1.0, alpha=2.0)  # 1 - 2 sn = tanh(u)
    torch.where(tail_mask, tail, t, out=t)
    y = xw * t
    if not need_grad:
        return y.to(x.dtype), None
    d = _sigmoid_backward_into(v, sn, buffer)  # v sn (1 - sn), into the tail's buffer
    torch.addcmul(t, xw, d, value=-2.0, out=d)
    return y.to(x.dtype), d.to(x.dtype)


def _sigmoid_backward_into(grad: Tensor, s: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.sigmoid_backward.grad_input(grad, s, grad_input=out)


Kernel = Callable[[Tensor, bool], "tuple[Tensor, Tensor | None]"]


class _SavedSlopeFunction(torch.autograd.Function):
    """Runs `kernel(x, True)`, which returns the output and its slope d = f'(x); saves d, so
    that backward is one multiply."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, kernel: Kernel) -> Tensor:
        y, d = kernel(x, True)
        ctx.save_for_backward(d)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (d,) = ctx.saved_tensors
        return grad * d, None


class KernelActivation(Activation):
    """An activation computed by `kernel(x, need_grad)` (see above): through the autograd
    Function when a gradient is needed, the cheaper forward alone otherwise."""

    kernel: ClassVar[Kernel]

    def forward(self, x: Tensor) -> Tensor:
        kernel = type(self).kernel
        if x.requires_grad and torch.is_grad_enabled():
            return _SavedSlopeFunction.apply(x, kernel)
        return kernel(x, False)[0]


def _mish(x: Tensor, need_grad: bool) -> tuple[Tensor, Tensor | None]:
    """x * tanh(softplus(x)), and its derivative.

    tanh(softplus(x)) = ((1 + e^x)^2 - 1) / ((1 + e^x)^2 + 1) = p / (2 - p) with
    p = s (2 - s), s = sigmoid(x): one sigmoid, nothing that overflows or cancels, accurate
    to rounding for every x (torch's fused mish kernel is ~4x slower on CPU).
    """
    xw = _wide(x)
    s = torch.sigmoid(xw)
    p = torch.rsub(s, 2.0).mul_(s)
    t = p.div_(torch.rsub(p, 2.0))  # tanh(softplus(x))
    y = t * xw
    if not need_grad:
        return y.to(x.dtype), None
    # d/dx = t + x sigmoid(x) (1 - t^2)
    d = _tanh_backward(s.mul_(xw), t).add_(t)
    return y.to(x.dtype), d.to(x.dtype)


class Mish(KernelActivation):
    """x * tanh(softplus(x)); smooth, non-monotonic, close to swish."""

    name = "mish"
    formula = "x * tanh(ln(1 + e^x))"
    kernel = _mish


class TanhExp(KernelActivation):
    """x * tanh(e^x) (Liu & Di 2020): about x for x > 0, a small negative dip below."""

    name = "tanhexp"
    formula = "x * tanh(e^x)"
    kernel = _tanhexp


# --------------------------------------------------------------------------- registry

# The first ten are the lab's zoo, in the order of the UI's keys 1..9, 0.
_CLASSES: dict[str, type[Activation]] = {cls.name: cls for cls in (
    Sigmoid, Tanh, ReLU, LeakyReLU, PReLU, ELU, GELU, Swish, Mish, TanhExp,
    Identity, SELU, CELU, Softplus, Softsign, LogSigmoid, ReLU6, Hardtanh, Hardswish,
)}

# Alias -> canonical name, both in normalised form (see `_normalise`).
_ALIASES: dict[str, str] = {
    "silu": "swish",
    "linear": "identity",
    "lrelu": "leakyrelu",
    "hswish": "hardswish",
    "logistic": "sigmoid",
}


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in "-_ ")


def _closest(key: str) -> str | None:
    """The nearest known name by difflib ratio, lightly penalising a different length so
    that 'relu7' suggests 'relu6' rather than 'relu'."""
    candidates = difflib.get_close_matches(key, [*_CLASSES, *_ALIASES], n=5, cutoff=0.6)
    if not candidates:
        return None

    def score(candidate: str) -> float:
        ratio = difflib.SequenceMatcher(None, key, candidate).ratio()
        return ratio - 0.1 * abs(len(candidate) - len(key))

    return max(candidates, key=score)


def canonical_name(name: str) -> str:
    """Resolve case, separators and aliases: 'SiLU' -> 'swish', 'leaky_relu' -> 'leakyrelu'."""
    if not isinstance(name, str):
        raise UnknownActivationError(f"activation name must be a string, got {name!r}")
    key = _normalise(name)
    key = _ALIASES.get(key, key)
    if key in _CLASSES:
        return key
    guess = _closest(key)
    hint = f" did you mean {guess!r}?" if guess else ""
    raise UnknownActivationError(
        f"unknown activation {name!r};{hint} valid: {', '.join(_CLASSES)}")


def activation_names() -> list[str]:
    """Canonical names: the ten of the lab's zoo first (UI keys 1..9, 0), then the extras."""
    return list(_CLASSES)


def create_activation(name: str, **config: Any) -> Activation:
    """A fresh module for `name` (or an alias) with `config` over its defaults."""
    cls = _CLASSES[canonical_name(name)]
    unknown = [key for key in config if key not in cls.defaults]
    if unknown:
        keys = ", ".join(repr(key) for key in unknown)
        allowed = (f"allowed: {', '.join(cls.defaults)}" if cls.defaults
                   else f"{cls.name} takes no config")
        plural = "s" if len(unknown) > 1 else ""
        raise ActivationConfigError(f"{cls.name}: unknown config key{plural} {keys}; {allowed}")
    return cls(**config)


@dataclass(frozen=True)
class ActivationInfo:
    """What the UI and the probes need to know about an activation without building one."""

    name: str  # canonical name
    formula: str  # one line, e.g. "x * tanh(e^x)"
    config: dict[str, Any]  # hyper-parameters at their defaults; {} when none
    # Exactly 0 by formula for a whole range of inputs (dead-neuron probes apply). Rounding
    # alone also gives exact zeros far into some negative tails (float32: gelu below ~-5,
    # sigmoid/swish/tanhexp only below ~-100, where the true value underflows); that does not count.
    sparse: bool
    smooth: bool  # continuously differentiable at the default config (no kink)
    aliases: tuple[str, ...] = ()  # other accepted names

    @property
    def default_config(self) -> dict[str, Any]:
        """Same as `config` (the defaults)."""
        return self.config


def activation_info(name: str) -> ActivationInfo:
    """Facts about an activation (name or alias) at its default config."""
    cls = _CLASSES[canonical_name(name)]
    return ActivationInfo(
        name=cls.name,
        formula=cls.formula,
        config=dict(cls.defaults),
        sparse=cls.sparse,
        smooth=cls.smooth,
        aliases=tuple(alias for alias, target in _ALIASES.items() if target == cls.name),
    )


# --------------------------------------------------------------------------- reference formulas
#
# The textbook formulas, written the naive way tutorials write them. They are the ground truth
# of the tests (evaluated in float64, inside the range where they do not overflow) and the
# "straightforward" baseline of the benchmarks. Do not use them to train.

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _ref_gelu(x: Tensor, approximate: str) -> Tensor:
    if approximate == "tanh":
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


_REFERENCES: dict[str, Callable[..., Tensor]] = {
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "relu": lambda x: torch.maximum(x, torch.zeros_like(x)),
    "leakyrelu": lambda x, alpha: torch.where(x > 0, x, alpha * x),
    "prelu": lambda x, init: torch.where(x > 0, x, init * x),
    "elu": lambda x, alpha: torch.where(x > 0, x, alpha * (torch.exp(x) - 1)),
    "gelu": _ref_gelu,
    "swish": lambda x: x / (1 + torch.exp(-x)),
    "mish": lambda x: x * torch.tanh(torch.log(1 + torch.exp(x))),
    # The guard from the TanhExp write-up: for x > 20 the output is x (e^x would overflow).
    "tanhexp": lambda x: x * torch.tanh(torch.exp(torch.clamp(x, max=20.0))),
    "identity": lambda x: x,
    "selu": lambda x: _SELU_SCALE * torch.where(x > 0, x, _SELU_ALPHA * (torch.exp(x) - 1)),
    "celu": lambda x, alpha: torch.where(x > 0, x, alpha * (torch.exp(x / alpha) - 1)),
    "softplus": lambda x, beta, threshold: torch.where(
        beta * x > threshold, x, torch.log(1 + torch.exp(beta * x)) / beta),
    "softsign": lambda x: x / (1 + torch.abs(x)),
    "logsigmoid": lambda x: -torch.log(1 + torch.exp(-x)),
    "relu6": lambda x: torch.minimum(torch.maximum(x, torch.zeros_like(x)),
                                     torch.full_like(x, 6.0)),
    "hardtanh": lambda x, min_val, max_val: torch.clamp(x, min_val, max_val),
    "hardswish": lambda x: x * torch.clamp(x + 3, 0, 6) / 6,
}


def reference_formula(name: str, x: Tensor, **config: Any) -> Tensor:
    """The activation's textbook formula applied to `x` (config checked as in create_activation)."""
    module = create_activation(name, **config)
    return _REFERENCES[module.name](x, **module.config)
