"""FAB: the Fast Adaptive Boundary attack of Croce & Hein (2020), run through torchattacks and
kept inside the eps-ball."""
from __future__ import annotations

import contextlib
import io

import torch
import torchattacks
from torch import Tensor, nn

from ..errors import UserError
from ..registry import ATTACKS
from .ball import project
from .base import Attack, check_norm, check_positive

_TA_NORMS = {"linf": "Linf", "l2": "L2"}


class _Counted(nn.Module):
    """The model as torchattacks sees it: [0, 1] pixels in (our models normalise inside), every
    call counted in the owning attack's `grad_calls` / `queries`, EOT applied to gradient passes.

    A pass with gradients returns the mean logits of `eot` passes; FAB only differentiates logit
    differences, which are linear in the logits, so its gradient is the EOT mean gradient.
    `backwards` is how many backward passes FAB makes per gradient forward (the number of
    classes for untargeted FAB, which differentiates every logit; 1 for targeted FAB).
    """

    def __init__(self, model: nn.Module, owner: Attack, targeted: bool) -> None:
        super().__init__()
        self.model = model
        self.owner = owner
        self.targeted = targeted

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            self.owner.queries += len(x)
            return self.model(x)
        logits = sum(self.model(x) for _ in range(self.owner.eot)) / self.owner.eot
        backwards = 1 if self.targeted else logits.shape[1]
        self.owner.grad_calls += len(x) * self.owner.eot * backwards
        return logits


@ATTACKS.register("fab", "Croce & Hein 2020 FAB(-T) via torchattacks, L∞ or L2: boundary search kept in eps")
class FAB(Attack):
    """Fast Adaptive Boundary attack (Croce & Hein, "Minimally distorted Adversarial Examples with
    a Fast Adaptive Boundary Attack", ICML 2020), as a bounded attack. Norm: L∞ (default) or L2.

    FAB linearises the decision boundary at the iterate, steps to the projection of the iterate
    (and, with weight α ≤ alpha_max, of the clean point) onto it with overshoot eta, and after each
    success moves back towards the clean point by beta, so it searches the *smallest* adversarial
    perturbation. The search is torchattacks' maintained implementation (`torchattacks.FAB`, a port
    of the authors' AutoAttack code); a point counts only when its norm is <= eps. FAB-T
    (`targets=k`, AutoAttack's member) runs once per target: the classes ranked 2nd..(k+1)th by
    the clean logits, each on the samples no earlier target fooled.

    Wrapping: torchattacks sees the model on [0, 1] inputs through a counting module (every
    forward is a query, every forward+backward a gradient call, times the classes for untargeted
    FAB, which back-propagates every logit), with EOT averaging of the logits it differentiates;
    its global-RNG reseeding runs inside a forked RNG and the model's modes are restored. Its
    output is projected onto the eps-ball and [0, 1] and then re-checked (counted queries).

    Options:
        norm: "linf" or "l2"; eps is measured in it.
        steps: FAB iterations per target and restart (AutoAttack: 100).
        targets: wrong classes attacked in turn (AutoAttack's FAB-T: 9; capped at classes − 1);
            0 = untargeted FAB (every logit differentiated at each step: costlier).
        restarts: runs per target; those after the first start at random (AutoAttack: 1).
        alpha_max: largest weight of the step towards the clean point's projection (paper: 0.1).
        eta: overshoot of the boundary projection (paper: 1.05).
        beta: shrink towards the clean point after a success (paper: 0.9).
        seed: seed of torchattacks' random starts (a forked global RNG; the caller's is left alone).

    Example::

        x_adv = ATTACKS.get("fab").build(targets=9)(model, x, y, eps=8 / 255)
    """

    name = "fab"

    @property
    def batch_independent(self) -> bool:  # type: ignore[override]
        """One run per target starts at the clean point and works per sample; torchattacks' random
        restarts are drawn for the whole batch."""
        return self.restarts == 1

    def __init__(
        self,
        *,
        norm: str = "linf",
        steps: int = 100,
        targets: int = 9,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.norm = check_norm(norm, self.name)
        check_positive(self.name, steps=steps, restarts=restarts, alpha_max=alpha_max, eta=eta, beta=beta)
        if targets < 0:
            raise UserError(f"attack '{self.name}': targets must be >= 0 (0 = untargeted), got {targets}")
        self.steps = steps
        self.targets = targets
        self.restarts = restarts
        self.alpha_max = alpha_max
        self.eta = eta
        self.beta = beta
        self.seed = seed

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        clean = self.logits(model, x)
        record = self.track(model, x, y, clean)
        idx = record.pending()
        if len(idx) == 0:
            return record.x_adv
        x0, y0 = x[idx], y[idx]
        found = self._search(model, x0, y0, eps, classes=clean.shape[1])
        x_cand = project(found.to(x.dtype), x0, eps, self.norm)
        keep = record.record(idx, x_cand, self.succeeded(self.logits(model, x_cand), y0))
        record.finish(idx[keep], x_cand[keep])
        return record.x_adv

    def _search(self, model: nn.Module, x: Tensor, y: Tensor, eps: float, classes: int) -> Tensor:
        """torchattacks' FAB on (x, y) (a model of `classes` outputs): its points within eps where
        it found one, x elsewhere."""
        # in eval mode like `model` (a fresh module trains): torchattacks puts back a training model with .train()
        counted = _Counted(model, self, targeted=self.targets > 0).train(model.training)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints when the model has no parameters
            fab = torchattacks.FAB(
                counted, norm=_TA_NORMS[self.norm], eps=eps, steps=self.steps, n_restarts=self.restarts,
                alpha_max=self.alpha_max, eta=self.eta, beta=self.beta, seed=self.seed,
                multi_targeted=self.targets > 0, n_classes=self.targets + 1,
            )
        fab.set_device(x.device)
        if self.targets > 0:
            fab.n_target_classes = min(self.targets, classes - 1)
        # FAB reseeds the global CPU RNG and the current CUDA device's: fork them all
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices):
            return fab(x, y).detach()
