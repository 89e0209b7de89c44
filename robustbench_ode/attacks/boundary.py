"""Boundary Attack (Brendel et al. 2018) through Foolbox 3: decision-based, minimal L2."""
from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..registry import ATTACKS
from .ball import lp_norm
from .base import Attack, check_positive, eval_mode


class _Counted(nn.Module):
    """Forwards to `model` and adds each batch size to `attack.queries`."""

    def __init__(self, model: nn.Module, attack: Attack) -> None:
        super().__init__()
        self.model = model
        self.count = attack

    def forward(self, x: Tensor) -> Tensor:
        self.count.queries += len(x)
        return self.model(x)


@ATTACKS.register("boundary", "Brendel et al. 2018 Boundary Attack (Foolbox 3): decision-based, minimal L2")
class Boundary(Attack):
    """Boundary Attack (Brendel, Rauber & Bethge, "Decision-Based Adversarial Attacks: Reliable
    Attacks Against Black-Box Machine Learning Models", ICLR 2018), run by Foolbox 3's
    `BoundaryAttack`. Norm: L2. Kind: minimal.

    Only the model's decisions are used. Each correctly classified sample starts from Foolbox's
    `LinearSearchBlendedUniformNoiseAttack` (uniform noise blended towards the image until the
    label flips) and walks along the decision boundary towards the image, shrinking the L2
    distance. `min_perturbation` gives the smallest norm found per sample (0 where the clean input
    is already misclassified, inf where no adversarial start was found); the uniform call returns
    the found point where its norm is <= eps and `x` elsewhere. Every model call is counted in
    `queries`. Foolbox draws from torch's global RNG, so it runs under a forked RNG seeded with
    `seed`: results repeat and the caller's random state is untouched (numpy's is not used).

    Options (the paper's setting is the default):
        steps: iterations (Foolbox's `steps`; ~1 query each, plus one every 10th for the step
            statistics; the paper's budget is 1,000 queries).
        spherical_step: the paper's "orthogonal" step size (Foolbox's `spherical_step`).
        source_step: the paper's "initial" step towards the original (Foolbox's `source_step`).
        seed: seed of the random start and proposals.

    Example::

        attack = ATTACKS.get("boundary").build(steps=1000)
        norms = attack.min_perturbation(model, x, y)     # (N,) L2 norms
        x_adv = attack(model, x, y, eps=2.0)             # uniform call, L2 radius
    """

    name = "boundary"
    uses_gradients = False
    norm = "l2"
    kind = "minimal"

    def __init__(
        self, *, steps: int = 1000, spherical_step: float = 0.1, source_step: float = 0.1, seed: int = 0
    ) -> None:
        super().__init__()
        check_positive(self.name, steps=steps, spherical_step=spherical_step, source_step=source_step)
        self.steps = steps
        self.spherical_step = spherical_step
        self.source_step = source_step
        self.seed = seed

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        x_adv, norms = self.minimal(model, x, y)
        return torch.where((norms <= eps).view(-1, *([1] * (x.dim() - 1))), x_adv, x)

    def min_perturbation(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Smallest L2 norm (N,) of an adversarial found per sample (0: already wrong, inf: none)."""
        with eval_mode(model):
            return self.minimal(model, x.detach(), y.detach())[1]

    def minimal(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Adversarial points and their L2 norms; `x` and inf where none was found.

        The model must already be in eval mode (the uniform call and `min_perturbation` see to it).
        """
        import foolbox as fb  # imported here: heavy, and only this attack needs it

        record = self.track(model, x, y)
        norms = torch.where(record.found, 0.0, torch.inf)
        idx = record.pending()
        if len(idx) == 0:
            return record.x_adv, norms
        fmodel = fb.PyTorchModel(_Counted(model, self).eval(), bounds=(0, 1), device=x.device)
        x0, y0 = x[idx], y[idx]
        devices = [x.get_device()] if x.is_cuda else []
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            torch.manual_seed(self.seed)
            # a failed start is reported below as inf, so Foolbox's warning about it is noise
            warnings.filterwarnings("ignore", message=".*failed to draw sufficient random inputs.*")
            starts = fb.attacks.LinearSearchBlendedUniformNoiseAttack(steps=50).run(
                fmodel, x0, fb.criteria.Misclassification(y0)
            )
            ok = self.succeeded(self.logits(model, starts), y0)
            if not ok.any():
                return record.x_adv, norms
            attack = fb.attacks.BoundaryAttack(
                steps=self.steps, spherical_step=self.spherical_step, source_step=self.source_step
            )
            advs = attack.run(fmodel, x0[ok], fb.criteria.Misclassification(y0[ok]), starting_points=starts[ok])
        record.x_adv[idx[ok]] = advs
        norms[idx[ok]] = lp_norm(advs - x0[ok], "l2")
        return record.x_adv, norms
