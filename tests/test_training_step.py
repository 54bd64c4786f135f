"""segtool.training.step.optimisation_step: the one step that training, the planner's timer and the throughput
benchmark share. With plain SGD at learning rate 1 a step moves the weights by minus the (clipped) gradient."""

from __future__ import annotations

import pytest
import torch

from segtool.training.step import optimisation_step


def one_step(grad_clip, scaler=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    before = model.weight.detach().clone()
    images = torch.full((4, 3), 10.0)
    labels = torch.zeros(4, 1)
    loss_fn = torch.nn.MSELoss()
    expected_loss = float(loss_fn(model(images), labels).detach())
    grad = torch.autograd.grad(loss_fn(model(images), labels), model.weight)[0]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = optimisation_step(model, optimizer, loss_fn, images, labels, torch.device("cpu"), "fp32", scaler, grad_clip)
    return before - model.weight.detach(), grad, loss, expected_loss


def test_a_step_applies_the_gradient_and_returns_the_loss():
    moved, grad, loss, expected = one_step(None)
    assert torch.allclose(moved, grad) and float(grad.norm()) > 10.0
    assert not loss.requires_grad and float(loss) == pytest.approx(expected)


def test_the_gradient_is_clipped_to_the_given_norm():
    moved, grad, _, _ = one_step(1.0)
    assert float(moved.norm()) == pytest.approx(1.0, rel=1e-4)
    assert torch.allclose(moved / moved.norm(), grad / grad.norm(), atol=1e-6)  # the direction is kept


def test_a_disabled_scaler_changes_nothing():
    with_scaler, *_ = one_step(1.0, torch.amp.GradScaler("cuda", enabled=False))
    without, *_ = one_step(1.0)
    assert torch.allclose(with_scaler, without)
