"""APGD: Auto-PGD of Croce & Hein (2020), L∞, with its step-size schedule; APGD-T (targeted DLR)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..registry import ATTACKS
from .ball import project
from .base import Attack, FirstAdversarial, LossFn, check_positive
from .losses import dlr_targeted, get_loss
from .sampling import SampleRNG, random_in_ball


def checkpoint_lengths(steps: int) -> list[int]:
    """Iterations between step-size checkpoints: 22% of the budget, shrinking by 3% a time,
    never below 6% (Croce & Hein 2020, Sec. 3.2; p0 = 0, p1 = 0.22, p_{j+1} − p_j shrinking)."""
    first, shrink, floor = (max(int(f * steps), 1) for f in (0.22, 0.03, 0.06))
    lengths, length, total = [], first, 0
    while total + length <= steps:
        lengths.append(length)
        total += length
        length = max(length - shrink, floor)
    return lengths


@ATTACKS.register("apgd", "Croce & Hein 2020 Auto-PGD (L∞): adaptive steps, CE or DLR; targets=k: APGD-T")
class APGD(Attack):
    """Auto-PGD (Croce & Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of
    Diverse Parameter-free Attacks", ICML 2020), APGD-CE / APGD-DLR. Norm: L∞.

    From a random start, z = P(x_k + η·sign(∇)), x_{k+1} = P(x_k + α(z − x_k) + (1−α)(x_k − x_{k−1}))
    with α = 0.75 (α = 1 on the first step) and η = 2·eps at first. At each checkpoint η halves and
    the iterate returns to the best-loss point when (1) fewer than rho·(period) steps raised the
    loss, or (2) η was not halved at the previous checkpoint and the best loss has not improved
    since. Each sample keeps its first adversarial iterate and then leaves the batch; restarts
    attack the samples still unfooled from fresh random starts.

    APGD-T (`targets=k`, as in AutoAttack): the loss is the targeted DLR
    (z_t − z_y) / (z_π1 − (z_π3 + z_π4)/2), and each of the k classes ranked most likely after
    the true one on the clean input is a target in turn: a full run (all restarts) on the samples
    no earlier target fooled. Success is still plain misclassification.

    Options:
        steps: iterations per restart (paper: 100).
        restarts: random restarts.
        rho: fraction of loss-increasing steps below which the step halves (paper: 0.75).
        seed: seed of the random starts.
        loss: "ce" (APGD-CE) or "dlr" (APGD-DLR, needs >= 3 classes); unused when targets > 0.
        targets: 0 = untargeted (default); k > 0 = APGD-T over the k most likely wrong classes
            (AutoAttack: 9; capped at classes − 1; needs >= 4 classes).

    Example::

        x_adv = ATTACKS.get("apgd").build(loss="dlr")(model, x, y, eps=8 / 255)
        x_adv = ATTACKS.get("apgd").build(targets=9)(model, x, y, eps=8 / 255)   # APGD-T
    """

    name = "apgd"
    norm = "linf"
    batch_independent = True
    momentum = 0.75

    def __init__(
        self,
        *,
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        seed: int = 0,
        loss: str = "ce",
        targets: int = 0,
    ) -> None:
        super().__init__()
        check_positive(self.name, steps=steps, restarts=restarts)
        if not 0.0 < rho <= 1.0:
            raise UserError(f"attack '{self.name}': rho must be in (0, 1], got {rho}")
        self.steps = steps
        self.restarts = restarts
        self.rho = rho
        self.seed = seed
        self.loss = get_loss(loss, self.name, allowed=("ce", "dlr"))
        if targets < 0:
            raise UserError(f"attack '{self.name}': targets must be >= 0 (0 = untargeted), got {targets}")
        self.targets = targets

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        rng = self.rng(x.device)
        record = self.track(model, x, y)
        if self.targets == 0:
            for restart in range(self.restarts):
                self._restart(model, record, x, y, eps, rng, (0, restart), None)
            return record.x_adv
        if len(record.pending()) == 0:  # the clean input fools the model everywhere
            return record.x_adv
        ranked = self._ranked_targets(model, record, x, y)
        for rank in range(ranked.shape[1]):
            for restart in range(self.restarts):
                self._restart(model, record, x, y, eps, rng, (rank + 1, restart), ranked[:, rank])
        return record.x_adv

    def _ranked_targets(self, model: nn.Module, record: FirstAdversarial, x: Tensor, y: Tensor) -> Tensor:
        """(N, k): per sample the k classes other than y with the largest clean logits, best first
        (rows of samples the clean check already settled stay 0: they are never attacked)."""
        pending = record.pending()
        logits = self.logits(model, x[pending])
        if logits.shape[1] < 4:
            raise UserError(f"attack '{self.name}': targets > 0 (APGD-T, targeted DLR) needs at least 4 classes")
        k = min(self.targets, logits.shape[1] - 1)
        others = logits.scatter(1, y[pending, None], float("-inf"))
        ranked = torch.zeros(len(x), k, dtype=torch.long, device=x.device)
        ranked[pending] = others.argsort(dim=1, descending=True)[:, :k]
        return ranked

    def _restart(
        self, model: nn.Module, record: FirstAdversarial, x: Tensor, y: Tensor, eps: float,
        rng: SampleRNG, key: tuple[int, int], target: Tensor | None,
    ) -> None:
        """One run from a fresh random start (the draw `key`: target rank, restart) on the samples
        not fooled yet (towards `target`, if given)."""
        idx = record.pending()
        if len(idx) == 0:
            return
        start = random_in_ball(x[idx], eps, "linf", rng[idx], *key)
        self._single_run(model, record, idx, x[idx], y[idx], start, eps, None if target is None else target[idx])

    def _loss_fn(self, target: Tensor | None) -> LossFn:
        """The per-sample loss: `self.loss`, or the targeted DLR towards `target`."""
        if target is None:
            return self.loss
        return lambda logits, y: dlr_targeted(logits, y, target)

    def _single_run(
        self, model: nn.Module, record: FirstAdversarial, idx: Tensor, x0: Tensor, y: Tensor, xk: Tensor, eps: float,
        target: Tensor | None = None,
    ) -> None:
        """One APGD run from `xk` on the samples `idx` (towards `target` for APGD-T); successes go into `record`."""
        loss_fn = self._loss_fn(target)
        logits, grad = self.loss_grad(model, xk, y, loss_fn)
        loss = loss_fn(logits, y)
        n = len(xk)
        # per-sample state, filtered together whenever samples succeed and leave
        s = {
            "idx": idx, "x0": x0, "y": y, "x": xk, "x_prev": xk, "grad": grad, "loss": loss,
            "x_best": xk, "grad_best": grad, "loss_best": loss, "loss_best_last": loss,
            "eta": torch.full((n,), 2.0 * eps, device=xk.device, dtype=xk.dtype),
            "halved_last": torch.ones(n, dtype=torch.bool, device=xk.device),
            "increases": torch.zeros(n, device=xk.device),
        }
        if target is not None:
            s["target"] = target
        keep = record.record(idx, xk, self.succeeded(logits, y))
        s = {k: v[keep] for k, v in s.items()}
        checkpoints, since = checkpoint_lengths(self.steps), 0
        for step in range(self.steps):
            if len(s["idx"]) == 0:
                return
            eta = _bcast(s["eta"], s["x"])
            a = 1.0 if step == 0 else self.momentum
            z = project(s["x"] + eta * s["grad"].sign(), s["x0"], eps, "linf")
            x_new = project(s["x"] + a * (z - s["x"]) + (1 - a) * (s["x"] - s["x_prev"]), s["x0"], eps, "linf")
            loss_fn = self._loss_fn(s.get("target"))
            logits, grad = self.loss_grad(model, x_new, s["y"], loss_fn)
            loss = loss_fn(logits, s["y"])
            s["increases"] = s["increases"] + (loss > s["loss"]).float()
            better = loss > s["loss_best"]
            s["x_best"] = torch.where(_bcast(better, x_new), x_new, s["x_best"])
            s["grad_best"] = torch.where(_bcast(better, grad), grad, s["grad_best"])
            s["loss_best"] = torch.where(better, loss, s["loss_best"])
            s["x_prev"], s["x"], s["grad"], s["loss"] = s["x"], x_new, grad, loss
            keep = record.record(s["idx"], x_new, self.succeeded(logits, s["y"]))
            if not keep.all():  # compact the batch only when samples leave
                s = {k: v[keep] for k, v in s.items()}
            since += 1
            if checkpoints and since == checkpoints[0]:
                self._checkpoint(s, checkpoints.pop(0))
                since = 0
        record.finish(s["idx"], s["x"])

    def _checkpoint(self, s: dict[str, Tensor], period: int) -> None:
        """Halve η and go back to the best point where progress stalled (conditions 1 and 2)."""
        stalled = s["increases"] < self.rho * period
        stalled |= ~s["halved_last"] & (s["loss_best"] <= s["loss_best_last"])
        s["eta"] = torch.where(stalled, s["eta"] / 2, s["eta"])
        s["x"] = torch.where(_bcast(stalled, s["x"]), s["x_best"], s["x"])
        s["grad"] = torch.where(_bcast(stalled, s["grad"]), s["grad_best"], s["grad"])
        s["halved_last"] = stalled
        s["loss_best_last"] = s["loss_best"]
        s["increases"] = torch.zeros_like(s["increases"])


def _bcast(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))
