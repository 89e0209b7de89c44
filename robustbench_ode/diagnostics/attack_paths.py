"""Two indicators of attack failure (Pintor et al., NeurIPS 2022) read off one recorded run of the
audit's own PGD-100 (`attack_paths`) on samples it leaves robust, every point the attack
evaluates kept with its loss: silent success (`check_silent_success`) and incomplete
optimisation (`check_incomplete_optimisation`). Each examines at most `cfg.indicator_samples`
samples. The paper's other indicators are in `indicators`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.ball import project, steepest_direction
from ..attacks.base import eval_mode
from ..evaluation.masking import noise_tolerance
from .audited import FAIL, GRADIENT_ATTACKS, NA, PASS, WARN, AuditConfig, AuditedModel, CheckResult, round4, timed

# Pintor et al.'s incomplete-optimisation rule for one sample: the best loss so far, rescaled to
# [0, 1] over the path, still changes by more than 5% over the path's last 10 points.
LAST_POINTS = 10
STILL_MOVING = 0.05
MORE_STEPS = 100  # flagged samples are attacked this much further from where their path ended
PATH_ATTACK, PATH_STEPS = "PGD-100", 100  # the audit attack whose path silent success and incomplete follow


def spread(idx: Tensor, k: int) -> Tensor:
    """At most `k` of `idx`, evenly spaced (all of them when there are <= k)."""
    if len(idx) <= k:
        return idx
    return idx[torch.linspace(0, len(idx) - 1, k).round().long()]


class PathRecorder(nn.Module):
    """`model` unchanged, keeping every point an attack evaluates: its cross-entropy and whether it
    is misclassified, attributed to the watched sample whose ε-ball (L∞) it lies in (the nearest
    one should balls overlap; points in no ball, e.g. transformed inputs, are skipped)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.losses: dict[int, list[float]] = {}
        self.first_adversarial: dict[int, Tensor] = {}
        self.last: dict[int, Tensor] = {}  # the last point evaluated for each sample
        self._x = self._y = self._ids = None
        self._eps = 0.0

    def watch(self, x: Tensor, y: Tensor, ids: Tensor, eps: float) -> None:
        """Attribute what follows to these clean samples (`ids`: their index in the audited samples)."""
        self._x, self._y, self._ids, self._eps = x.detach().flatten(1), y, ids.tolist(), eps
        for i in self._ids:
            self.losses.setdefault(i, [])

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        if self._x is not None and x[0].numel() == self._x.shape[1]:  # not a resized (transformed) input
            with torch.no_grad():
                self._record(x.detach(), logits.detach().float())
        return logits

    def _record(self, x: Tensor, logits: Tensor) -> None:
        dist = torch.cdist(x.flatten(1).float(), self._x.float(), p=float("inf"))
        near, owner = dist.min(dim=1)
        inside = near <= self._eps + 1e-5
        y = self._y[owner]
        ce = F.cross_entropy(logits, y, reduction="none").cpu().tolist()
        wrong = (logits.argmax(dim=1) != y).cpu().tolist()
        for r, (j, ok) in enumerate(zip(owner.tolist(), inside.tolist())):
            if not ok:
                continue
            sample = self._ids[j]
            self.losses[sample].append(ce[r])
            self.last[sample] = x[r].cpu()
            if wrong[r] and sample not in self.first_adversarial:
                self.first_adversarial[sample] = x[r].cpu()


@dataclass
class AttackPaths:
    """A recorded run of `attack` on samples `idx` (audited indices) it had left robust."""

    attack: str
    robust_acc: float  # the attack's robust accuracy over all audited samples (its cached verdict)
    idx: Tensor
    losses: list[Tensor]  # cross-entropy of every point evaluated for each sample, in order
    path_adversarial: Tensor  # some evaluated point is misclassified (re-checked by audited.decide)
    returned_adversarial: Tensor  # the point returned is misclassified (audited.decide)
    last: Tensor  # the last point evaluated for each sample (where its path ended)


def attack_paths(audited: AuditedModel, cfg: AuditConfig, name: str = PATH_ATTACK) -> AttackPaths:
    """Run audit attack `name` again, with the same seed and sample ids as its cached run (so the
    same path for a deterministic model), on at most `cfg.indicator_samples` of the samples its
    verdict counts robust, recording every point it evaluates. Cached on the audited."""
    key = f"paths:{name}"
    if key in audited.cache:
        return audited.cache[key]
    robust = audited.robust(name, GRADIENT_ATTACKS[name](cfg), cfg.eps)
    idx = spread(torch.nonzero(robust).flatten(), cfg.indicator_samples)
    attack = GRADIENT_ATTACKS[name](cfg)
    recorder = PathRecorder(audited.precision.for_model(audited.model).differentiated(audited.model))
    points = []
    for i in range(0, len(idx), audited.batch_size):
        ids = idx[i : i + audited.batch_size]
        xb, yb = audited.x[ids].to(audited.device), audited.y[ids].to(audited.device)
        recorder.watch(xb, yb, ids, cfg.eps)
        points.append(attack(recorder, xb, yb, cfg.eps, ids=ids).cpu())
    y = audited.y[idx]
    returned = (audited.decide(torch.cat(points)) != y) if len(idx) else torch.zeros(0, dtype=torch.bool)
    path_adv = torch.zeros(len(idx), dtype=torch.bool)
    found = [k for k, i in enumerate(idx.tolist()) if i in recorder.first_adversarial]
    if found:
        firsts = torch.stack([recorder.first_adversarial[int(idx[k])] for k in found]).view(-1, *audited.x.shape[1:])
        path_adv[found] = audited.decide(firsts) != y[found]
    last = torch.stack([recorder.last.get(i, audited.x[i].flatten()).view(audited.x.shape[1:]) for i in idx.tolist()]
                       ) if len(idx) else audited.x[:0]
    paths = AttackPaths(name, audited.accuracy(robust), idx,
                        [torch.tensor(recorder.losses[i]) for i in idx.tolist()], path_adv, returned, last)
    audited.cache[key] = paths
    return paths


@timed
def check_silent_success(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
    """Silent success (Pintor et al. 2022): the attack evaluated a misclassified point on its path
    but returned one that is classified correctly, so a sample it had broken is counted robust."""
    paths = attack_paths(audited, cfg)
    name = f"silent success ({paths.attack} path)"
    k = len(paths.idx)
    silent = int((paths.path_adversarial & ~paths.returned_adversarial).sum())
    # the robust accuracy this overstates, extrapolated from the samples examined to all robust ones
    overstated = paths.robust_acc * silent / k if k else 0.0
    tol = noise_tolerance(paths.robust_acc, audited.n)
    numbers = {"eps": round4(cfg.eps), f"{paths.attack} robust acc": round4(paths.robust_acc), "robust samples examined": k,
               "adversarial on path": int(paths.path_adversarial.sum()),
               "returned adversarial": int(paths.returned_adversarial.sum()), "silent successes": silent,
               "robust acc overstated": round4(overstated), "noise": round4(tol)}
    if k == 0:
        return CheckResult(name, PASS, numbers, f"{paths.attack} left no sample robust: no robust verdict to question")
    if overstated > tol:
        status = FAIL
        why = (f"{silent} of {k} samples counted robust met an adversarial point on the attack's path that it did not "
               "return: keep the best point of the path, not the last")
    elif silent:
        status, why = WARN, f"{silent} sample(s) counted robust had an adversarial point on the path (within noise)"
    else:
        status, why = PASS, "no sample counted robust had a misclassified point anywhere on the attack's path"
    return CheckResult(name, status, numbers, why)


def still_moving(losses: Tensor, last: int = LAST_POINTS) -> float:
    """How much the best loss so far (rescaled to [0, 1] over the path) still changes over the
    path's last `last` points: Pintor et al.'s incomplete-optimisation measure (for a loss the
    attacker maximises). 0 for a flat path."""
    best = torch.cummax(losses.double(), dim=0).values
    span = float(best[-1] - best[0])
    if not span > 0:
        return 0.0
    tail = best[-last:]
    return float(tail[-1] - tail[0]) / span


def continue_pgd(model: nn.Module, x: Tensor, y: Tensor, start: Tensor, eps: float, step: float,
                 steps: int) -> Tensor:
    """`steps` more L∞ PGD steps on the cross-entropy (sign of the gradient, then projection onto
    the ε-ball of `x` and [0, 1]) from `start`, in eval mode: per sample its first misclassified
    iterate (it then stops), else its last."""
    x_adv, xk, active = start.clone(), start.clone(), torch.arange(len(x), device=x.device)
    with eval_mode(model):
        for k in range(steps + 1):
            xg = xk.detach().requires_grad_(True)
            with torch.enable_grad():
                z = model(xg)
                (grad,) = torch.autograd.grad(F.cross_entropy(z.float(), y[active], reduction="sum"), xg)
            x_adv[active] = xk.detach()
            keep = z.argmax(1) == y[active]
            active, xk, grad = active[keep], xk[keep], grad[keep]
            if k == steps or not len(active):
                break
            xk = project(xk + step * steepest_direction(grad, "linf"), x[active], eps, "linf")
    return x_adv


@timed
def check_incomplete_optimisation(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
    """Incomplete optimisation (Pintor et al. 2022): on samples the attack leaves robust, its best
    loss is still rising over the last steps (`still_moving` > 5%). Those samples then get
    `MORE_STEPS` more PGD steps (at PGD-100's step size) from where their path ended
    (`continue_pgd`), and the row fails when that breaks more of them than noise: the verdicts were
    cut short."""
    paths = attack_paths(audited, cfg)
    name = f"incomplete optimisation ({paths.attack} loss)"
    unfooled = [k for k, fooled in enumerate(paths.returned_adversarial.tolist()) if not fooled]
    judged = [k for k in unfooled if len(paths.losses[k]) >= 2 * LAST_POINTS]
    moving = {k: still_moving(paths.losses[k]) for k in judged}
    flagged = [k for k in judged if moving[k] > STILL_MOVING]
    rises = sorted(moving.values())
    numbers: dict = {"eps": round4(cfg.eps), "robust samples examined": len(judged), "loss still rising": len(flagged),
                     "median rise over last 10 points": round4(rises[len(rises) // 2]) if rises else 0.0,
                     "threshold": STILL_MOVING}
    if not unfooled:
        return CheckResult(name, PASS, numbers, f"{paths.attack} left no sample robust: nothing to converge")
    if not judged:
        return CheckResult(name, NA, numbers, f"paths shorter than {2 * LAST_POINTS} points: too short to judge")
    if not flagged:
        return CheckResult(name, PASS, numbers,
                           "the attack's best loss had levelled off on every sample it left robust")
    ids = paths.idx[flagged]
    crafter = audited.precision.for_model(audited.model).differentiated(audited.model)
    points = [continue_pgd(crafter, audited.x[part].to(audited.device), audited.y[part].to(audited.device),
                           paths.last[rows].to(audited.device), cfg.eps, 2.5 * cfg.eps / PATH_STEPS, MORE_STEPS).cpu()
              for part, rows in zip(ids.split(audited.batch_size), torch.tensor(flagged).split(audited.batch_size))]
    broken = int((audited.decide(torch.cat(points)) != audited.y[ids]).sum())
    overstated = paths.robust_acc * broken / len(judged)
    tol = noise_tolerance(paths.robust_acc, audited.n)
    numbers |= {f"broken by {MORE_STEPS} more steps": broken, "robust acc overstated": round4(overstated),
                "noise": round4(tol)}
    rising = f"the loss of {len(flagged)} of {len(judged)} robust samples was still rising at the last step"
    if overstated > tol:
        status = FAIL
        why = f"{rising}, and {MORE_STEPS} more steps break {broken}: the attack stopped too early; give it more steps"
    elif broken:
        status, why = WARN, f"{rising}, and {MORE_STEPS} more steps break {broken} (within noise)"
    else:
        status, why = PASS, f"{rising}, but {MORE_STEPS} more steps break none of them"
    return CheckResult(name, status, numbers, why)


