"""FGSM: the fast gradient sign method of Goodfellow, Shlens & Szegedy (2015)."""
from __future__ import annotations

from torch import Tensor, nn

from ..registry import ATTACKS
from .ball import project
from .base import Attack
from .losses import cross_entropy


@ATTACKS.register("fgsm", "Goodfellow et al. 2015 fast gradient sign method: one L∞ step of size eps")
class FGSM(Attack):
    """Fast Gradient Sign Method (Goodfellow et al., "Explaining and Harnessing Adversarial
    Examples", ICLR 2015). Norm: L∞.

    One step x + eps * sign(∇x CE(f(x), y)), clamped to [0, 1]. It has no options; every sample
    is stepped (no early stop), as in the paper, so a transfer to another model sees the step.

    Example::

        x_adv = ATTACKS.get("fgsm").build()(model, x, y, eps=8 / 255)
    """

    name = "fgsm"
    norm = "linf"
    batch_independent = True

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        _, grad = self.loss_grad(model, x, y, cross_entropy)
        return project(x + eps * grad.sign(), x, eps, "linf")
