"""CW-L2 as a bounded attack: PGD-L2 on the Carlini & Wagner (2017) logit-margin loss."""
from __future__ import annotations

from torch import Tensor

from ..registry import ATTACKS
from .losses import margin
from .pgd import PGD


@ATTACKS.register("cw", "Carlini & Wagner 2017 margin loss, as PGD inside an L2 ball of radius eps")
class CW(PGD):
    """Carlini & Wagner ("Towards Evaluating the Robustness of Neural Networks", S&P 2017) L2
    margin loss, run as a *bounded* attack. Norm: L2 — eps is the L2 radius, not an L∞ bound.

    CW's original method minimises ||δ||2 + c·f(x+δ) with a binary search over c; a benchmark over
    an eps grid needs a point inside a given ball instead, so this is PGD-L2 (random start in the
    ball) ascending the margin max_{j≠y} z_j − z_y. A sample counts as fooled once it is
    misclassified with margin >= kappa; since it then leaves the batch, CW's clipped loss
    min(margin, kappa) and the plain margin give the same iterates.

    Options:
        steps: iterations.
        step_size: L2 step length; 0 means 2.5 * eps / steps (Madry et al.'s rule).
        kappa: confidence the adversarial must reach (0: plain misclassification).
        seed: seed of the random start.

    Example::

        x_adv = ATTACKS.get("cw").build()(model, x, y, eps=0.5)   # L2 radius 0.5
    """

    name = "cw"

    def __init__(self, *, steps: int = 100, step_size: float = 0.0, kappa: float = 0.0, seed: int = 0) -> None:
        super().__init__(norm="l2", step_size=step_size, steps=steps, seed=seed, loss="margin")
        self.kappa = kappa

    def step_size_for(self, eps: float) -> float:
        return self.step_size if self.step_size > 0 else 2.5 * eps / self.steps

    def succeeded(self, logits: Tensor, y: Tensor) -> Tensor:
        return super().succeeded(logits, y) & (margin(logits, y) >= self.kappa)
