"""The speed-ups of the training loop and activations keep the maths and the features.

Fused optimizer kernels, hot swaps that add or remove learned parameters under them,
checkpoints loaded across kernels, and the CPU paths of PReLU and tanh against PyTorch's own.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from actlab.engine.activations import create_activation
from actlab.engine.config import LabConfig
from actlab.engine.events import BatchProgress
from actlab.engine.control import RunControl
from actlab.engine.lab import resume_run
from actlab.engine.training import TrainingRun, make_optimizer


def _config(tmp_path, **overrides) -> LabConfig:
    base = {"run.runs_dir": str(tmp_path / "runs"), "run.device": "cpu", "data.dataset": "digits",
            "model.hidden_sizes": [64, 32], "train.epochs": 3, "train.batch_size": 64, "train.lr": 0.05,
            "probes.enabled": False}
    return LabConfig().replace(**(base | overrides))


def _fused_available() -> bool:
    try:
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizer_kernel_survives_loading_another_kernels_state(optimizer):
    model = torch.nn.Linear(4, 3)
    opt = make_optimizer(LabConfig().replace(**{"train.optimizer": optimizer}), model)
    kernel = {k: opt.param_groups[0].get(k) for k in ("fused", "foreach")}
    if _fused_available():
        assert kernel["fused"] is True
    plain_cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    plain = plain_cls(model.parameters(), lr=0.123)  # default (per-parameter loop) kernel
    model(torch.randn(5, 4)).sum().backward()
    plain.step()
    opt.load_state_dict(plain.state_dict())
    assert {k: opt.param_groups[0].get(k) for k in ("fused", "foreach")} == kernel
    assert opt.param_groups[0]["lr"] == 0.123  # the rest of the saved group does come back
    opt.step()


def test_fused_and_plain_sgd_train_alike():
    torch.manual_seed(0)
    x, y = torch.randn(128, 20), torch.randint(0, 5, (128,))
    results = []
    for fused in (False, True):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
        if fused:
            opt = make_optimizer(LabConfig().replace(**{"train.lr": 0.05}), model)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for step in range(20):
            idx = torch.arange(step * 32, step * 32 + 32) % 128
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_swaps_that_add_and_remove_learned_slopes_keep_training_and_saving(tmp_path, digits_cpu):
    control = RunControl()

    def consumer(event):
        if isinstance(event, BatchProgress):
            if event.global_step == 5:
                control.swap_activation("prelu")  # slopes join an optimizer that has stepped
            elif event.global_step == 12:
                control.save()
            elif event.global_step == 20:
                control.swap_activation("relu")  # and leave it
            elif event.global_step == 24:
                control.save()

    config = _config(tmp_path)
    result = TrainingRun(config, consumers=[consumer], control=control, data=digits_cpu).run()
    assert result.status == "finished", result.message
    assert result.test_acc is not None and result.test_acc > 0.5
    again = resume_run(result.run_dir, data=digits_cpu).run()  # the checkpoints load into a fresh optimizer
    assert again.status in ("finished", "early-stopped")


def test_newcomers_zero_momentum_gives_the_first_steps_update():
    """A newcomer's zero momentum buffer gives the same first update as no buffer at all."""
    from actlab.engine.training import _sync_optimizer_state

    p_old, p_new = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p_old], lr=0.1, momentum=0.9)
    p_old.grad = torch.full((3,), 0.5)
    opt.step()
    opt.param_groups[0]["params"] = [p_old, p_new]
    _sync_optimizer_state(opt)
    assert torch.equal(opt.state[p_new]["momentum_buffer"], torch.zeros(2))
    p_new.grad = torch.tensor([2.0, -4.0])
    opt.step()
    torch.testing.assert_close(p_new.detach(), torch.tensor([1.0 - 0.2, 1.0 + 0.4]))
    opt.param_groups[0]["params"] = [p_old]
    _sync_optimizer_state(opt)
    assert p_new not in opt.state
    opt.state_dict()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prelu_gradients_equal_torch_prelu(dtype):
    x = (torch.randn(64, 33, dtype=dtype) * 3)
    x[0, :4] = 0.0  # the slope side at exactly 0, as torch's
    g = torch.randn(64, 33, dtype=dtype)
    act = create_activation("prelu").to(dtype)
    a = x.clone().requires_grad_()
    act(a).backward(g)
    weight = act.weight.detach().clone().requires_grad_()
    b = x.clone().requires_grad_()
    F.prelu(b, weight).backward(g)
    assert torch.equal(a.grad, b.grad)
    torch.testing.assert_close(act.weight.grad, weight.grad)
    with torch.no_grad():
        assert torch.equal(act(x), F.prelu(x, weight.detach()))


def test_tanh_cpu_path_is_close_to_torch_tanh():
    x = torch.linspace(-30, 30, 60001, requires_grad=True)
    y = create_activation("tanh")(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    y = y.detach()
    expected = torch.tanh(x.detach().double())
    assert float((y.double() - expected).abs().max()) < 3e-7
    torch.testing.assert_close(grad.double(), 1 - expected ** 2, rtol=0, atol=1e-6)
    assert torch.equal(create_activation("tanh")(torch.zeros(3)), torch.zeros(3))
