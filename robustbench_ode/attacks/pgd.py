"""PGD: projected gradient descent of Madry et al. (2018), L∞ or L2, with random restarts."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..registry import ATTACKS
from .ball import project, steepest_direction
from .base import Attack, check_norm, check_positive
from .losses import get_loss
from .sampling import SampleRNG, random_in_ball


@ATTACKS.register("pgd", "Madry et al. 2018 projected gradient descent (L∞ or L2), random start, restarts")
class PGD(Attack):
    """Projected Gradient Descent (Madry et al., "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018). Norm: L∞ (default) or L2.

    Each step moves by `step_size` along sign(grad) (L∞) or grad/||grad||2 (L2) and projects
    back onto the eps-ball and [0, 1]. Each sample keeps its first adversarial iterate and then
    leaves the batch (see `FirstAdversarial`); a restart only attacks the samples still unfooled.
    Called with `batch_size`, the places samples leave are refilled with unattacked ones (`refills`).
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
    refills = True

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

    def start(self, x: Tensor, eps: float, rng: SampleRNG, restart: int) -> Tensor:
        """The first iterate of restart `restart` for the samples `x` (rows of `rng`)."""
        return random_in_ball(x, eps, self.norm, rng, restart) if self.random_start else x

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        """Every sample runs its own restarts and steps in a working batch of at most `batch_size`
        samples; a sample that leaves (broken, or out of restarts) makes room for the next one
        from the queue, so samples at different steps share a batch (a step is per-sample)."""
        rng = self.rng(x.device)
        alpha = self.step_size_for(eps)
        record = self.track(model, x, y)
        queue = record.pending()
        rows = queue[:0]  # the working batch: sample indices, their iterates, steps and restarts
        xk, step, restart = x[:0], queue[:0], queue[:0]
        while True:
            new, queue = queue[: self.batch_size - len(rows)], queue[self.batch_size - len(rows) :]
            if len(new):
                rows, xk = torch.cat([rows, new]), torch.cat([xk, self.start(x[new], eps, rng[new], 0)])
                step, restart = torch.cat([step, torch.zeros_like(new)]), torch.cat([restart, torch.zeros_like(new)])
            if len(rows) == 0:
                return record.x_adv
            last = step == self.steps  # the final check of a restart: no gradient
            moving = ~last
            success = torch.zeros(len(rows), dtype=torch.bool, device=x.device)
            grad = xk[:0]
            if moving.any():
                xm, ym = (xk, y[rows]) if not last.any() else (xk[moving], y[rows[moving]])
                logits, grad = self.loss_grad(model, xm, ym, self.loss)
                success[moving] = self.succeeded(logits, ym)
            if last.any():
                success[last] = self.succeeded(self.logits(model, xk[last]), y[rows[last]])
            keep = record.record(rows, xk, success)
            ended = last & keep
            record.finish(rows[ended], xk[ended])
            again = ended & (restart + 1 < self.restarts) & ~record.found[rows]
            go = keep & moving
            xk = xk.clone()  # the next iterates are new points: a model may keep the ones it was given
            if go.any():
                xg = xk[go] + alpha * steepest_direction(grad[go[moving]], self.norm)
                xk[go] = project(xg, x[rows[go]], eps, self.norm)
                step[go] += 1
            for r in restart[again].unique().tolist():
                fresh = again & (restart == r)
                xk[fresh] = self.start(x[rows[fresh]], eps, rng[rows[fresh]], r + 1)
            step[again], restart[again] = 0, restart[again] + 1
            stay = go | again
            if not stay.all():
                rows, xk, step, restart = rows[stay], xk[stay], step[stay], restart[stay]
