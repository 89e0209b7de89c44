"""PGD: projected gradient descent of Madry et al. (2018), L∞ or L2, with random restarts."""
from __future__ import annotations

from torch import Tensor, nn

from ..errors import UserError
from ..registry import ATTACKS
from .ball import project, steepest_direction
from .base import Attack, check_norm, check_positive
from .losses import get_loss
from .sampling import random_in_ball


@ATTACKS.register("pgd", "Madry et al. 2018 projected gradient descent (L∞ or L2), random start, restarts")
class PGD(Attack):
    """Projected Gradient Descent (Madry et al., "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018). Norm: L∞ (default) or L2.

    Each step moves by `step_size` along sign(grad) (L∞) or grad/||grad||2 (L2) and projects
    back onto the eps-ball and [0, 1]. Each sample keeps its first adversarial iterate and then
    leaves the batch (see `FirstAdversarial`); a restart only attacks the samples still unfooled.
    With `random_start=False` and `step_size = eps / steps` this is I-FGSM / BIM (Kurakin et al.).

    Options:
        norm: "linf" or "l2"; eps is measured in it.
        step_size: absolute step in pixel units (paper: 0.01).
        steps: iterations per restart (paper: 40).
        random_start: start uniformly in the eps-ball (paper: yes).
        restarts: independent random starts; the first success over restarts is kept.
        seed: seed of the random starts (per sample: see `sampling.SampleRNG`; reproducible).
        loss: "ce" (cross-entropy) or "margin" (Carlini-Wagner logit margin).

    Example::

        attack = ATTACKS.get("pgd").build(steps=20)
        x_adv = attack(model, x, y, eps=8 / 255)
    """

    name = "pgd"
    batch_independent = True

    def __init__(
        self,
        *,
        norm: str = "linf",
        step_size: float = 0.01,
        steps: int = 40,
        random_start: bool = True,
        restarts: int = 1,
        seed: int = 0,
        loss: str = "ce",
    ) -> None:
        super().__init__()
        self.norm = check_norm(norm, self.name)
        if step_size < 0:
            raise UserError(f"attack '{self.name}': step_size must be >= 0, got {step_size}")
        check_positive(self.name, steps=steps, restarts=restarts)
        self.step_size = step_size
        self.steps = steps
        self.random_start = random_start
        self.restarts = restarts
        self.seed = seed
        self.loss = get_loss(loss, self.name)

    def step_size_for(self, eps: float) -> float:
        """The step used at radius `eps` (a subclass may scale it with eps)."""
        return self.step_size

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        rng = self.rng(x.device)
        alpha = self.step_size_for(eps)
        record = self.track(model, x, y)
        for restart in range(self.restarts):
            idx = record.pending()
            if len(idx) == 0:
                break
            x0, yk = x[idx], y[idx]
            xk = random_in_ball(x0, eps, self.norm, rng[idx], restart) if self.random_start else x0
            for step in range(self.steps + 1):
                if step < self.steps:
                    logits, grad = self.loss_grad(model, xk, yk, self.loss)
                else:
                    logits = self.logits(model, xk)
                keep = record.record(idx, xk, self.succeeded(logits, yk))
                idx, x0, yk, xk = idx[keep], x0[keep], yk[keep], xk[keep]
                if step == self.steps or len(idx) == 0:
                    break
                xk = project(xk + alpha * steepest_direction(grad[keep], self.norm), x0, eps, self.norm)
            record.finish(idx, xk)
        return record.x_adv
