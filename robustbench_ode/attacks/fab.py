"""FAB: the Fast Adaptive Boundary attack of Croce & Hein (2020), kept inside the eps-ball.

FAB-T (targeted, AutoAttack's member) runs here, step for step the search of torchattacks'
`FAB.attack_single_run_targeted` (its boundary projections, `projection_linf` / `projection_l2`,
are imported from torchattacks), with two changes of cost that change no verdict: gradients are
taken with respect to the input only (torchattacks' `.backward()` also computes, and leaves
behind, every parameter's gradient: ~40% more per step), and a sample leaves the batch at its
first adversarial point within eps. Untargeted FAB (`targets=0`) is torchattacks' own search."""
from __future__ import annotations

import contextlib
import io
from typing import Iterator

import torch
import torchattacks
from torch import Tensor, nn
from torchattacks.attacks.fab import projection_l2, projection_linf

from ..errors import UserError
from ..registry import ATTACKS
from .ball import lp_norm, project
from .base import Attack, FirstAdversarial, check_norm, check_positive
from .sampling import SampleRNG

_TA_NORMS = {"linf": "Linf", "l2": "L2"}
_PROJECTIONS = {"linf": projection_linf, "l2": projection_l2}


@contextlib.contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[None]:
    """Switch off `requires_grad` of the model's parameters for the duration (then restore it), so
    a third-party `.backward()` neither computes their gradients nor leaves them in `.grad`."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class _Counted(nn.Module):
    """The model as torchattacks sees it: [0, 1] pixels in (our models normalise inside), every
    call counted in the owning attack's `grad_calls` / `queries`, EOT applied to gradient passes.

    A pass with gradients returns the mean logits of `eot` passes; FAB only differentiates logit
    differences, which are linear in the logits, so its gradient is the EOT mean gradient.
    Untargeted FAB differentiates every logit: one backward pass per class per gradient forward.
    """

    def __init__(self, model: nn.Module, owner: Attack) -> None:
        super().__init__()
        self.model = model
        self.owner = owner

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            self.owner.queries += len(x)
            return self.model(x)
        logits = sum(self.model(x) for _ in range(self.owner.eot)) / self.owner.eot
        self.owner.grad_calls += len(x) * self.owner.eot * logits.shape[1]
        return logits


@ATTACKS.register("fab", "Croce & Hein 2020 FAB(-T), L∞ or L2: boundary search kept in eps")
class FAB(Attack):
    """Fast Adaptive Boundary attack (Croce & Hein, "Minimally distorted Adversarial Examples with
    a Fast Adaptive Boundary Attack", ICML 2020), as a bounded attack. Norm: L∞ (default) or L2.

    FAB linearises the decision boundary at the iterate, steps to the projection of the iterate
    (and, with weight α ≤ alpha_max, of the clean point) onto it with overshoot eta, and after each
    success moves back towards the clean point by beta, so it searches the *smallest* adversarial
    perturbation; a point counts only when its norm is <= eps. FAB-T (`targets=k`, AutoAttack's
    member) runs once per target: the classes ranked 2nd..(k+1)th by the clean logits, each on
    the samples no earlier target fooled.

    FAB-T is the search of torchattacks' `FAB.attack_single_run_targeted` (a port of the authors'
    code; its boundary projections are imported from it), step for step, with cheaper bookkeeping:
    a step costs one gradient call (input gradients only: torchattacks' `.backward()` also
    computes every parameter's) and one success check (a query) per sample; with `early_stop` a
    sample leaves the batch at its first adversarial point within eps (a later step could only
    find a smaller one: the verdict is the same), and without it every sample runs every step
    and keeps the smallest adversarial point within eps, torchattacks' answer. The random starts
    of restarts > 1 are torchattacks' (eps/2 along a random direction), drawn per sample. With
    `eot` > 1 the logit gap z_t − z_y and its gradient are means over `eot` passes (a check is
    one pass).

    Untargeted FAB (`targets=0`) runs torchattacks' `FAB` itself, through a counting module (every
    forward a query, every forward+backward one gradient call per class, since it back-propagates
    every logit) with EOT averaging of the logits it differentiates, the parameters' gradients
    switched off, its global-RNG reseeding inside a forked RNG and the model's modes restored; its
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
        seed: seed of the random starts (untargeted: torchattacks' forked global RNG; the caller's
            is left alone).

    Example::

        x_adv = ATTACKS.get("fab").build(targets=9)(model, x, y, eps=8 / 255)
    """

    name = "fab"

    @property
    def batch_independent(self) -> bool:  # type: ignore[override]
        """FAB-T draws its random starts per sample; untargeted FAB (torchattacks') draws them for
        the whole batch, so it is batch-independent only with one restart (no random start)."""
        return self.targets > 0 or self.restarts == 1

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
        if self.targets > 0:
            return self._targeted(model, record, x, y, clean, eps)
        idx = record.pending()
        if len(idx) == 0:
            return record.x_adv
        x0, y0 = x[idx], y[idx]
        found = self._search(model, x0, y0, eps, classes=clean.shape[1])
        x_cand = project(found.to(x.dtype), x0, eps, self.norm)
        keep = record.record(idx, x_cand, self.succeeded(self.logits(model, x_cand), y0))
        record.finish(idx[keep], x_cand[keep])
        return record.x_adv

    # --- FAB-T ------------------------------------------------------------------------------------

    def _targeted(self, model: nn.Module, record: FirstAdversarial, x: Tensor, y: Tensor, clean: Tensor,
                  eps: float) -> Tensor:
        """FAB-T on the samples not settled yet that the clean input classifies correctly."""
        pending = record.pending()
        active = pending[~self.succeeded(clean[pending], y[pending])]
        if len(active) == 0:
            return record.x_adv
        k = min(self.targets, clean.shape[1] - 1)
        ranked = clean.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)[:, :k]
        rng = self.rng(x.device)
        best, found = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for rank in range(k):
            for restart in range(self.restarts):
                rows = active[~found[active]]
                if len(rows) == 0:
                    break
                x0 = x[rows]
                start = x0 if restart == 0 else self._random_start(x0, eps, rng[rows], rank, restart)
                self._single_run(model, rows, x0, y[rows], ranked[rows, rank], start, eps, best, found)
        best[active] = project(best[active], x[active], eps, self.norm)
        record.record(active, best[active], found[active])
        rest = record.pending()
        record.finish(rest, best[rest])
        return record.x_adv

    def _random_start(self, x0: Tensor, eps: float, rng: SampleRNG, rank: int, restart: int) -> Tensor:
        """torchattacks' random start: x0 + eps/2 along a random direction (unit L∞ or L2 norm)."""
        shape = tuple(x0.shape[1:])
        if self.norm == "linf":
            t = 2 * rng.uniform(shape, 7, rank, restart, dtype=x0.dtype).to(x0.device) - 1
        else:
            t = rng.normal(shape, 7, rank, restart, dtype=x0.dtype).to(x0.device)
        t = t / lp_norm(t, self.norm).clamp_min(1e-12).view(-1, *([1] * (x0.dim() - 1)))
        return (x0 + 0.5 * eps * t).clamp(0.0, 1.0)

    def _gap_grad(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """At `x`: the logits (of the last of `eot` passes), the gap z_t − z_y and its input
        gradient (both means over `eot` passes). Counted in `grad_calls`."""
        self.grad_calls += len(x) * self.eot
        xg = x.detach().requires_grad_(True)
        gap_sum, grad_sum = torch.zeros(len(x), device=x.device, dtype=x.dtype), torch.zeros_like(x)
        with torch.enable_grad():
            for _ in range(self.eot):
                logits = model(xg)
                gap = logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
                (grad,) = torch.autograd.grad(gap.sum(), xg)
                gap_sum += gap.detach()
                grad_sum += grad
        return logits.detach(), gap_sum / self.eot, grad_sum / self.eot

    @torch.no_grad()
    def _step(self, x1: Tensor, x0: Tensor, gap: Tensor, grad: Tensor) -> Tensor:
        """One FAB step towards the linearised boundary z_t = z_y (torchattacks' targeted step)."""
        bs = len(x1)
        w = grad.reshape(bs, -1)
        b = -gap + (grad * x1).reshape(bs, -1).sum(dim=-1)
        d3 = _PROJECTIONS[self.norm](torch.cat((x1.reshape(bs, -1), x0.reshape(bs, -1)), 0),
                                     torch.cat((w, w), 0), torch.cat((b, b), 0))
        d1, d2 = d3[:bs].reshape(x1.shape), d3[-bs:].reshape(x1.shape)
        a0 = lp_norm(d3, self.norm).clamp_min(1e-8).view(-1, *([1] * (x1.dim() - 1)))
        a1, a2 = a0[:bs], a0[-bs:]
        alpha = (a1 / (a1 + a2)).clamp_min(0.0).clamp_max(self.alpha_max)
        return ((x1 + self.eta * d1) * (1 - alpha) + (x0 + d2 * self.eta) * alpha).clamp(0.0, 1.0)

    def _single_run(self, model: nn.Module, rows: Tensor, x0: Tensor, y: Tensor, target: Tensor, x1: Tensor,
                    eps: float, best: Tensor, found: Tensor) -> None:
        """One FAB-T run from `x1` towards `target` on the samples `rows`: each one's adversarial
        point within eps (the first with `early_stop`, else the smallest) goes into `best` / `found`."""
        smallest = torch.full((len(x1),), float("inf"), device=x1.device)
        s = {"rows": rows, "x0": x0, "y": y, "target": target, "x1": x1, "smallest": smallest}
        for _ in range(self.steps):
            _, gap, grad = self._gap_grad(model, s["x1"], s["y"], s["target"])
            s["x1"] = self._step(s["x1"], s["x0"], gap, grad)
            adv = self.succeeded(self.logits(model, s["x1"]), s["y"])
            if not adv.any():
                continue
            norm = lp_norm(s["x1"] - s["x0"], self.norm)
            better = adv & (norm <= eps) & (norm < s["smallest"])
            best[s["rows"][better]] = s["x1"][better]
            found[s["rows"][better]] = True
            s["smallest"] = torch.where(better, norm, s["smallest"])
            # an adversarial point moves back towards the clean one
            s["x1"] = torch.where(_bcast(adv, s["x1"]), s["x0"] + (s["x1"] - s["x0"]) * self.beta, s["x1"])
            if self.early_stop and better.any():
                s = {key: value[~better] for key, value in s.items()}
                if len(s["rows"]) == 0:
                    return

    # --- untargeted FAB: torchattacks' ------------------------------------------------------------

    def _search(self, model: nn.Module, x: Tensor, y: Tensor, eps: float, classes: int) -> Tensor:
        """torchattacks' FAB on (x, y) (a model of `classes` outputs): its points within eps where
        it found one, x elsewhere."""
        # in eval mode like `model` (a fresh module trains): torchattacks puts back a training model with .train()
        counted = _Counted(model, self).train(model.training)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints when the model has no parameters
            fab = torchattacks.FAB(
                counted, norm=_TA_NORMS[self.norm], eps=eps, steps=self.steps, n_restarts=self.restarts,
                alpha_max=self.alpha_max, eta=self.eta, beta=self.beta, seed=self.seed,
                n_classes=classes,
            )
        fab.set_device(x.device)
        # FAB reseeds the global CPU RNG and the current CUDA device's: fork them all
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices), input_gradients_only(model):
            return fab(x, y).detach()


def _bcast(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))
