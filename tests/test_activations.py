"""Activation registry and modules, checked against float64 textbook formulas and gradcheck."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from actlab.engine.activations import (
    Activation,
    ActivationConfigError,
    UnknownActivationError,
    activation_info,
    activation_names,
    canonical_name,
    create_activation,
    reference_formula,
)

NAMES = activation_names()
ZOO = ["sigmoid", "tanh", "relu", "leakyrelu", "prelu", "elu", "gelu", "swish", "mish", "tanhexp"]

# Where some activation's slope jumps (relu-likes at 0, hardtanh at +-1, hardswish at +-3,
# relu6 at 6). Gradient checks sample away from them.
KINKS = (-3.0, -1.0, 0.0, 1.0, 3.0, 6.0)

# A non-default config per activation that has one, for the round-trip test.
NON_DEFAULT = {
    "leakyrelu": {"alpha": 0.2},
    "prelu": {"init": 0.25},
    "elu": {"alpha": 0.5},
    "gelu": {"approximate": "none"},
    "celu": {"alpha": 2.0},
    "softplus": {"beta": 2.0, "threshold": 10.0},
    "hardtanh": {"min_val": -2.0, "max_val": 0.5},
}


def away_from_kinks(x: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    keep = torch.ones_like(x, dtype=torch.bool)
    for kink in KINKS:
        keep &= (x - kink).abs() > margin
    return x[keep]


def module(name: str, dtype: torch.dtype = torch.float32, **config) -> Activation:
    return create_activation(name, **config).to(dtype)


def extreme_grid(dtype: torch.dtype) -> torch.Tensor:
    """Dense [-1e4, 1e4] plus the overflow edges of exp in float32 (~88.7) and the TanhExp guard."""
    special = [0.0, 1e-30, 3.0, 9.0, 20.0, 20.5, 88.0, 88.7, 89.0, 100.0, 1e4]
    special = torch.tensor(special + [-v for v in special], dtype=torch.float64)
    grid = torch.cat([torch.linspace(-1e4, 1e4, 20001, dtype=torch.float64), special])
    return grid.to(dtype)


# --------------------------------------------------------------------------- registry


def test_names_zoo_order_and_count():
    assert NAMES[:10] == ZOO
    assert len(NAMES) >= 17
    assert len(set(NAMES)) == len(NAMES)
    for extra in ("identity", "selu", "celu", "softplus", "hardswish", "relu6", "hardtanh",
                  "softsign"):
        assert extra in NAMES
    assert [canonical_name(name) for name in NAMES] == NAMES


@pytest.mark.parametrize("alias, name", [
    ("silu", "swish"), ("SiLU", "swish"), ("leaky_relu", "leakyrelu"),
    ("leaky-relu", "leakyrelu"), ("Leaky ReLU", "leakyrelu"), ("linear", "identity"),
    ("tanh_exp", "tanhexp"), ("hard_swish", "hardswish"), ("RELU", "relu"),
])
def test_aliases_resolve(alias, name):
    assert canonical_name(alias) == name
    built = create_activation(alias)
    assert built.name == name
    assert type(built) is type(create_activation(name))


def test_silu_alias_is_listed_in_info():
    assert "silu" in activation_info("swish").aliases
    assert activation_info("silu").name == "swish"


def test_unknown_name_suggests_closest_and_lists_valid():
    with pytest.raises(UnknownActivationError) as caught:
        create_activation("relu7")
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "'relu7'" in message
    assert "did you mean 'relu6'?" in message
    assert "\n" not in message
    valid = message.split("valid: ", 1)[1]
    assert valid.split(", ") == NAMES


def test_unknown_name_suggestions():
    for typo, meant in [("sigmod", "sigmoid"), ("tanhexpp", "tanhexp"), ("prelu2", "prelu"),
                        ("mishh", "mish")]:
        with pytest.raises(UnknownActivationError, match=f"did you mean '{meant}'"):
            canonical_name(typo)
    with pytest.raises(UnknownActivationError) as caught:
        activation_info("qwertyuiop")
    assert "did you mean" not in str(caught.value)
    assert "valid: sigmoid, tanh" in str(caught.value)


def test_unknown_config_key_names_activation_key_and_allowed():
    with pytest.raises(ActivationConfigError) as caught:
        create_activation("leakyrelu", beta=1.0)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message == "leakyrelu: unknown config key 'beta'; allowed: alpha"
    with pytest.raises(ValueError, match="relu: unknown config key 'alpha'; relu takes no config"):
        create_activation("relu", alpha=0.1)


@pytest.mark.parametrize("name, key, value, allowed", [
    ("leakyrelu", "alpha", -0.1, ">= 0"),
    ("leakyrelu", "alpha", "0.1", "finite number"),
    ("leakyrelu", "alpha", True, "finite number"),
    ("elu", "alpha", -1.0, ">= 0"),
    ("celu", "alpha", 0.0, "> 0"),
    ("softplus", "beta", 0.0, "> 0"),
    ("softplus", "threshold", -1.0, "> 0"),
    ("prelu", "init", float("nan"), "finite number"),
    ("gelu", "approximate", "fast", "'tanh' or 'none'"),
    ("hardtanh", "min_val", 2.0, "< max_val"),
])
def test_bad_config_value(name, key, value, allowed):
    with pytest.raises(ValueError) as caught:
        create_activation(name, **{key: value})
    message = str(caught.value)
    assert message.startswith(f"{name}: {key} must be")
    assert allowed in message
    assert "\n" not in message


def test_create_returns_fresh_modules():
    first, second = create_activation("prelu"), create_activation("prelu")
    assert first is not second
    with torch.no_grad():
        first.weight.fill_(0.5)
    assert second.weight.item() == pytest.approx(0.1)


@pytest.mark.parametrize("name", NAMES)
def test_config_json_round_trip(name):
    original = create_activation(name, **NON_DEFAULT.get(name, {}))
    config = json.loads(json.dumps(original.config))
    assert config == original.config
    rebuilt = create_activation(original.name, **config)
    assert type(rebuilt) is type(original)
    assert rebuilt.config == original.config
    x = torch.linspace(-8, 8, 101)
    torch.testing.assert_close(rebuilt(x), original(x), rtol=0, atol=0)


def test_config_round_trip_changes_outputs():
    # Guard for the round-trip test: the non-default configs really change the function.
    x = torch.linspace(-8, 8, 101)
    for name, config in NON_DEFAULT.items():
        assert not torch.equal(create_activation(name, **config)(x), create_activation(name)(x))


def test_leakyrelu_default_alpha_is_tutorial_value():
    act = create_activation("leakyrelu")
    assert act.config == {"alpha": 0.1}
    x = torch.tensor([-2.0, -1.0, 3.0], dtype=torch.float64)
    assert act(x).tolist() == [-0.2, -0.1, 3.0]


def test_prelu_has_one_scalar_parameter():
    act = create_activation("prelu")
    params = list(act.parameters())
    assert len(params) == 1 and params[0].numel() == 1
    assert params[0].item() == pytest.approx(0.1)
    assert act.config == {"init": 0.1}
    x = torch.tensor([-2.0, 3.0], requires_grad=True)
    y = act(x)
    assert y.tolist() == pytest.approx([-0.2, 3.0])
    y.backward(torch.tensor([1.5, 1.0]))
    assert params[0].grad.item() == pytest.approx(1.5 * -2.0)  # d/da of a * x at x = -2


@pytest.mark.parametrize("name", NAMES)
def test_info_agrees_with_module(name):
    info = activation_info(name)
    act = create_activation(name)
    assert info.name == act.name == name
    assert info.formula == act.formula and info.formula and "\n" not in info.formula
    assert info.config == info.default_config == act.config
    json.dumps(info.config)


@pytest.mark.parametrize("name", NAMES)
def test_info_sparse_flag_matches_behaviour(name):
    # Within +-6: further out, rounding alone gives exact zeros (tanh-GELU below -7.1 in
    # float64, -5.1 in float32), which is not what the flag is about.
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    zeros = int((module(name, torch.float64)(x) == 0).sum())
    if activation_info(name).sparse:
        assert zeros > 250  # a whole range of inputs gives exactly 0
    else:
        assert zeros <= 1  # at most f(0) = 0


@pytest.mark.parametrize("name", NAMES)
def test_info_smooth_flag_matches_behaviour(name):
    act = module(name, torch.float64)
    delta = 1e-7
    x = torch.tensor([k + s for k in KINKS for s in (-delta, delta)], dtype=torch.float64,
                     requires_grad=True)
    act(x).sum().backward()
    jumps = (x.grad[1::2] - x.grad[0::2]).abs()
    if activation_info(name).smooth:
        assert float(jumps.max()) < 1e-4
    else:
        assert float(jumps.max()) > 1e-2


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("name", NAMES)
def test_matches_float64_reference(name):
    x = torch.cat([torch.linspace(-30, 30, 3001, dtype=torch.float64),
                   torch.tensor(KINKS, dtype=torch.float64)])
    act = module(name, torch.float64)
    expected = reference_formula(name, x, **act.config)
    torch.testing.assert_close(act(x), expected, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_float64_reference(name):
    x = torch.linspace(-80, 80, 4001, dtype=torch.float32)
    act = create_activation(name)
    expected = reference_formula(name, x.double(), **act.config)
    error = (act(x).double() - expected).abs()
    # Rounding-level: relative 1e-5, or a few float32 ulps of the input's size.
    bound = 1e-5 * expected.abs() + 4 * torch.finfo(torch.float32).eps * (1 + x.double().abs())
    assert bool((error <= bound).all()), f"max error {float(error.max()):.3g}"


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_matches_float64_reference(name):
    x = torch.linspace(-10, 10, 401, dtype=torch.float64).to(torch.bfloat16)
    act = create_activation(name)
    y = act(x)
    assert y.dtype == torch.bfloat16
    expected = reference_formula(name, x.double(), **act.config)
    torch.testing.assert_close(y.double(), expected, rtol=2e-2, atol=2e-2)


def test_mish_matches_torch_mish():
    x = torch.linspace(-40, 40, 2001, dtype=torch.float64, requires_grad=True)
    y = create_activation("mish")(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    x_ref = x.detach().requires_grad_()
    y_ref = F.mish(x_ref)
    (grad_ref,) = torch.autograd.grad(y_ref.sum(), x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["mish", "tanhexp"])
def test_eval_path_equals_training_path(name):
    act = create_activation(name)
    x = torch.randn(64, 33) * 10
    with torch.no_grad():
        y_eval = act(x)
    y_train = act(x.clone().requires_grad_())
    assert y_train.requires_grad and not y_eval.requires_grad
    assert torch.equal(y_eval, y_train.detach())


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    x = torch.cat([torch.linspace(-8.03, 8.03, 81, dtype=torch.float64),
                   torch.tensor([-25.0, -15.0, 12.0, 25.0], dtype=torch.float64)])
    x = away_from_kinks(x).requires_grad_()
    assert torch.autograd.gradcheck(module(name, torch.float64), (x,), eps=1e-6, atol=1e-7)


def tanhexp_derivative(x: torch.Tensor) -> torch.Tensor:
    """tanh(e^x) - x e^x (tanh^2(e^x) - 1), with the reference's guard on e^x."""
    e = torch.exp(torch.clamp(x, max=20.0))
    t = torch.tanh(e)
    return t - x * e * (t * t - 1)


def test_tanhexp_derivative_closed_form():
    x = torch.linspace(-40, 40, 8001, dtype=torch.float64, requires_grad=True)
    y = create_activation("tanhexp")(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, tanhexp_derivative(x.detach()), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_tanhexp_is_identity_above_20(dtype):
    x = torch.tensor([20.5, 21.0, 50.0, 88.5, 89.0, 1e3, 1e4], dtype=dtype, requires_grad=True)
    y = create_activation("tanhexp")(x)
    y.backward(torch.ones_like(y))
    assert torch.equal(y.detach(), x.detach())
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_finite_forward_backward_on_extremes(name, dtype):
    x = extreme_grid(dtype).requires_grad_()
    y = create_activation(name)(x)
    y.backward(torch.ones_like(y))
    assert y.dtype == dtype and x.grad.dtype == dtype
    assert bool(torch.isfinite(y).all()), x[~torch.isfinite(y)][:5]
    assert bool(torch.isfinite(x.grad).all()), x[~torch.isfinite(x.grad)][:5]


def test_reference_is_naive_where_modules_are_not():
    # The references are the textbook forms: they overflow where the modules must not.
    x = torch.tensor([100.0, -100.0], requires_grad=True)
    assert torch.isnan(reference_formula("tanh", x)[0])
    assert torch.isinf(reference_formula("logsigmoid", x)[1])
    assert create_activation("tanh")(x).tolist() == [1.0, -1.0]
    assert create_activation("logsigmoid")(x)[1].item() == pytest.approx(-100.0)
    y = create_activation("elu")(x)
    y.backward(torch.ones_like(y))
    assert torch.isfinite(x.grad).all()  # where(x > 0, x, exp(x) - 1) gives NaN here


def test_reference_formula_checks_config_and_aliases():
    x = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    assert reference_formula("silu", x).tolist() == pytest.approx([-1 / (1 + torch.e), 2 / (1 + torch.e ** -2)])
    assert reference_formula("leaky_relu", x, alpha=0.3).tolist() == pytest.approx([-0.3, 2.0])
    with pytest.raises(ValueError, match="leakyrelu: alpha must be"):
        reference_formula("leakyrelu", x, alpha=-1.0)


@pytest.mark.parametrize("name", ["tanhexp", "mish"])
def test_custom_autograd_works_under_torch_compile(name):
    act = create_activation(name)
    compiled = torch.compile(act, backend="aot_eager", fullgraph=True)
    x = torch.linspace(-30, 30, 301, requires_grad=True)
    y = compiled(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    x_eager = x.detach().requires_grad_()
    y_eager = act(x_eager)
    (grad_eager,) = torch.autograd.grad(y_eager.sum(), x_eager)
    torch.testing.assert_close(y, y_eager)
    torch.testing.assert_close(grad, grad_eager)
