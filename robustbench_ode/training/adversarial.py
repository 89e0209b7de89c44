"""PGD adversarial training (Madry et al. 2018) and the L∞ inner maximisation it shares with TRADES.

Random starts are drawn from the global CPU generator and then moved to the device: the trainer
saves that generator's state after each epoch, so a resumed adversarial run repeats exactly what
an uninterrupted one computes (a CUDA-side draw would not be restored).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.ball import project
from ..attacks.base import eval_mode
from ..errors import UserError
from ..registry import METHODS
from .methods import TrainMethod


def require(method: str, condition: bool, option: str, value: float, rule: str) -> None:
    """Raise a one-line UserError naming the method and option unless `condition` holds."""
    if not (condition and math.isfinite(value)):
        raise UserError(f"training method '{method}': option '{option}' must be {rule}, got {value}")


def uniform_noise(x: Tensor, radius: float) -> Tensor:
    """U(-radius, radius) noise shaped like `x`, drawn on the CPU generator (resumable), on x's device."""
    return ((2 * torch.rand(x.shape, dtype=x.dtype) - 1) * radius).to(x.device)


def gaussian_noise(x: Tensor, scale: float) -> Tensor:
    """scale * N(0, 1) noise shaped like `x`, drawn on the CPU generator (resumable), on x's device."""
    return (scale * torch.randn(x.shape, dtype=x.dtype)).to(x.device)


def ascend_linf(objective: Callable[[Tensor], Tensor], x: Tensor, start: Tensor, eps: float, step_size: float,
                steps: int) -> Tensor:
    """`steps` signed-gradient ascent steps on `objective` (a scalar) from `start`, each projected onto
    the L∞ eps-ball of `x` and [0, 1]; returns the LAST iterate, detached.

    Training wants the point of highest loss the budget reaches, so unlike the evaluation attacks
    nothing stops early at the first misclassified iterate. Parameter gradients are left untouched.
    """
    xk = project(start.detach(), x, eps, "linf")
    for _ in range(steps):
        xk.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(objective(xk), xk)
        xk = project(xk.detach() + step_size * grad.sign(), x, eps, "linf")
    return xk.detach()


@METHODS.register("pgd", "Madry et al. 2018 PGD adversarial training: CE on last-iterate L∞ PGD-10 points")
class PGDTraining(TrainMethod):
    """PGD adversarial training (Madry et al., "Towards Deep Learning Models Resistant to Adversarial
    Attacks", ICLR 2018): minimise the cross-entropy at the PGD maximiser of the cross-entropy in the
    L∞ eps-ball, found by `steps` signed-gradient steps from a uniform random start.

    The inner maximisation runs the model in eval mode (BatchNorm uses its running statistics and
    does not update them, so the perturbation of one sample does not depend on the rest of the
    batch; the official TRADES code does the same); the outer step is taken in train mode.
    The returned logits are those of the adversarial batch, so the trainer's accuracy is robust
    training accuracy.

    Defaults are the PreAct-ResNet18 / CIFAR-10 recipe of paper Table 2 (PGD-10, eps 8/255, step
    2/255). The usual optimiser recipe (Madry et al.; Rice et al. 2020 for PreAct-ResNet18) is SGD
    lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, /10 decays (Rice et al.: 200 epochs, at 100
    and 150); pass `--optimizer sgd --lr 0.1 --weight-decay 5e-4` (the trainer's auto weight decay
    is 1e-4).
    """

    name = "pgd"

    def __init__(self, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10,
                 random_start: bool = True) -> None:
        require(self.name, eps >= 0, "eps", eps, ">= 0")
        require(self.name, step_size > 0, "step_size", step_size, "> 0")
        require(self.name, steps >= 1, "steps", steps, ">= 1")
        self.eps, self.step_size, self.steps, self.random_start = eps, step_size, steps, random_start

    def adversarial(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Last PGD iterate maximising the summed cross-entropy, computed in eval mode."""
        start = x + uniform_noise(x, self.eps) if self.random_start else x
        with eval_mode(model):
            return ascend_linf(lambda xa: F.cross_entropy(model(xa), y, reduction="sum"), x, start, self.eps,
                               self.step_size, self.steps)

    def train_step(self, model, optimizer, x, y):
        x_adv = self.adversarial(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        return loss.item(), logits.detach()
