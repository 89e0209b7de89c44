"""The Indicators of Attack Failure (Pintor et al., "Indicators of Attack Failure: Debugging and
Improving Optimization of Adversarial Examples", NeurIPS 2022) as audit checks.

Each indicator is a check `(bench, cfg) -> CheckResult` like those of `checks`. How the paper's
six indicators map onto the audit (one row each, none duplicated):

- unavailable gradients: `checks.check_gradients` (the input-gradient row) covers zero, NaN/inf
  and vanishing gradients; `interrupted_graph` adds the paper's other case, a graph that gives no
  input gradient at all, and fails that row.
- unconstrained attack failure: `check_unconstrained`, beside `checks.check_large_eps`: at L∞
  ε = 1 (any image is reachable) PGD must fool every correctly classified sample, where the
  large-ε row only asks for chance at ε = 0.5.
- silent success and incomplete optimisation: `check_silent_success` and
  `check_incomplete_optimisation`, both from one recorded run (`attack_paths`) of the audit's own
  PGD-100 on samples it leaves robust, every point the attack evaluates kept with its loss.
- transfer failure: `check_transfer_failure`, adversarials crafted entirely on the ODE solver
  surrogates of `checks.check_surrogate` that fool the surrogate but not the model.
- unstable predictions: `check_unstable_predictions`, the relative loss change under small
  uniform input noise (whether identical calls agree is the model check "randomness").

Each runs on at most `cfg.indicator_samples` samples so the audit stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.ball import project, steepest_direction
from ..attacks.base import eval_mode
from ..attacks.sampling import SampleRNG
from ..evaluation.masking import noise_tolerance
from ..models.base import batch_dependent
from .checks import (FAIL, GRADIENT_ATTACKS, NA, PASS, WARN, AuditConfig, Bench, CheckResult, _r, _timed, pgd,
                     ode_surrogates)

# Pintor et al.'s incomplete-optimisation rule for one sample: the best loss so far, rescaled to
# [0, 1] over the path, still changes by more than 5% over the path's last 10 points.
LAST_POINTS = 10
STILL_MOVING = 0.05
MORE_STEPS = 100  # flagged samples are attacked this much further from where their path ended
# Their unstable-predictions threshold: a mean relative loss change above 0.1 under small noise.
UNSTABLE = 0.1
PATH_ATTACK, PATH_STEPS = "PGD-100", 100  # the audit attack whose path silent success and incomplete follow
UNBOUNDED_EPS = 1.0  # L∞ radius of the unconstrained attack: every image in [0, 1] is reachable


def spread(idx: Tensor, k: int) -> Tensor:
    """At most `k` of `idx`, evenly spaced (all of them when there are <= k)."""
    if len(idx) <= k:
        return idx
    return idx[torch.linspace(0, len(idx) - 1, k).round().long()]


def log_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """log of each sample's cross-entropy, in float64 and exact where the cross-entropy itself
    rounds to 0: CE = log1p(e^d) with d = logsumexp of the other logits − the true one, so
    log CE = d for d < −30 (where log1p(e^d) = e^d to 1e-13). A confident sample's log CE is then
    linear in its logit margin, however confident it is."""
    z = logits.double()
    true = z.gather(1, y[:, None]).squeeze(1)
    d = z.scatter(1, y[:, None], float("-inf")).logsumexp(dim=1) - true
    return torch.where(d < -30, d, torch.log(torch.log1p(torch.exp(d.clamp_min(-30)))))


def _log_losses(model: nn.Module, x: Tensor, y: Tensor, bench: Bench,
                grad: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-sample log cross-entropy, logits and (with `grad`) the input gradient of the log
    cross-entropy, all on CPU, of `model` in eval mode, batched as the bench decides (one image at
    a time for a batch-dependent model)."""
    size = 1 if batch_dependent(model) else bench.batch_size
    losses, logits, grads = [], [], []
    with eval_mode(model), torch.set_grad_enabled(grad):
        for i in range(0, len(x), size):
            xb = x[i : i + size].to(bench.device).detach().requires_grad_(grad)
            z = model(xb)
            loss = log_cross_entropy(z, y[i : i + size].to(bench.device))
            if grad:
                grads.append(torch.autograd.grad(loss.sum(), xb)[0].detach().cpu().double())
            losses.append(loss.detach().cpu())
            logits.append(z.detach().cpu())
    return torch.cat(losses), torch.cat(logits), (torch.cat(grads) if grad else None)


# --- unavailable gradients: the interrupted graph --------------------------------------------------
def interrupted_graph(model: nn.Module, x: Tensor) -> str | None:
    """Why autograd gives no input gradient for `model` at the first image of `x`, or None when it
    does: Pintor et al.'s "interrupted computational graph" (a detach, a no-grad block, a
    non-differentiable op such as argmax in the forward pass). Only its absence is checked here;
    whether the gradient is zero or wrong is `gradient_stats`' business."""
    xg = x[:1].detach().clone().requires_grad_(True)
    try:
        with eval_mode(model), torch.enable_grad():
            out = model(xg)
            if not out.requires_grad:
                return "the output has no autograd history (detached or computed without gradients)"
            (grad,) = torch.autograd.grad(out.float().sum(), xg, allow_unused=True)
    except RuntimeError as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        return f"backward failed: {str(exc).splitlines()[0]}"
    if grad is None:
        return "the output does not depend on the input in the autograd graph (the input is detached)"
    return None


# --- silent success and incomplete optimisation: a recorded attack path ---------------------------
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
        """Attribute what follows to these clean samples (`ids`: their index in the bench)."""
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
    """A recorded run of `attack` on samples `idx` (bench indices) it had left robust."""

    attack: str
    robust_acc: float  # the attack's robust accuracy over the whole bench (its cached verdict)
    idx: Tensor
    losses: list[Tensor]  # cross-entropy of every point evaluated for each sample, in order
    path_adversarial: Tensor  # some evaluated point is misclassified (re-checked by bench.decide)
    returned_adversarial: Tensor  # the point returned is misclassified (bench.decide)
    last: Tensor  # the last point evaluated for each sample (where its path ended)


def attack_paths(bench: Bench, cfg: AuditConfig, name: str = PATH_ATTACK) -> AttackPaths:
    """Run audit attack `name` again, with the same seed and sample ids as its cached run (so the
    same path for a deterministic model), on at most `cfg.indicator_samples` of the samples its
    verdict counts robust, recording every point it evaluates. Cached on the bench."""
    key = f"paths:{name}"
    if key in bench.cache:
        return bench.cache[key]
    robust = bench.robust(name, GRADIENT_ATTACKS[name](cfg), cfg.eps)
    idx = spread(torch.nonzero(robust).flatten(), cfg.indicator_samples)
    attack = GRADIENT_ATTACKS[name](cfg)
    recorder = PathRecorder(bench.precision.for_model(bench.model).differentiated(bench.model))
    points = []
    for i in range(0, len(idx), bench.batch_size):
        ids = idx[i : i + bench.batch_size]
        xb, yb = bench.x[ids].to(bench.device), bench.y[ids].to(bench.device)
        recorder.watch(xb, yb, ids, cfg.eps)
        points.append(attack(recorder, xb, yb, cfg.eps, ids=ids).cpu())
    y = bench.y[idx]
    returned = (bench.decide(torch.cat(points)) != y) if len(idx) else torch.zeros(0, dtype=torch.bool)
    path_adv = torch.zeros(len(idx), dtype=torch.bool)
    found = [k for k, i in enumerate(idx.tolist()) if i in recorder.first_adversarial]
    if found:
        firsts = torch.stack([recorder.first_adversarial[int(idx[k])] for k in found]).view(-1, *bench.x.shape[1:])
        path_adv[found] = bench.decide(firsts) != y[found]
    last = torch.stack([recorder.last.get(i, bench.x[i].flatten()).view(bench.x.shape[1:]) for i in idx.tolist()]
                       ) if len(idx) else bench.x[:0]
    paths = AttackPaths(name, bench.accuracy(robust), idx,
                        [torch.tensor(recorder.losses[i]) for i in idx.tolist()], path_adv, returned, last)
    bench.cache[key] = paths
    return paths


@_timed
def check_silent_success(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """Silent success (Pintor et al. 2022): the attack evaluated a misclassified point on its path
    but returned one that is classified correctly, so a sample it had broken is counted robust."""
    paths = attack_paths(bench, cfg)
    name = f"silent success ({paths.attack} path)"
    k = len(paths.idx)
    silent = int((paths.path_adversarial & ~paths.returned_adversarial).sum())
    # the robust accuracy this overstates, extrapolated from the samples examined to all robust ones
    overstated = paths.robust_acc * silent / k if k else 0.0
    tol = noise_tolerance(paths.robust_acc, bench.n)
    numbers = {"eps": _r(cfg.eps), f"{paths.attack} robust acc": _r(paths.robust_acc), "robust samples examined": k,
               "adversarial on path": int(paths.path_adversarial.sum()),
               "returned adversarial": int(paths.returned_adversarial.sum()), "silent successes": silent,
               "robust acc overstated": _r(overstated), "noise": _r(tol)}
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


@_timed
def check_incomplete_optimisation(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """Incomplete optimisation (Pintor et al. 2022): on samples the attack leaves robust, its best
    loss is still rising over the last steps (`still_moving` > 5%). Those samples then get
    `MORE_STEPS` more PGD steps (at PGD-100's step size) from where their path ended
    (`continue_pgd`), and the row fails when that breaks more of them than noise: the verdicts were
    cut short."""
    paths = attack_paths(bench, cfg)
    name = f"incomplete optimisation ({paths.attack} loss)"
    unfooled = [k for k, fooled in enumerate(paths.returned_adversarial.tolist()) if not fooled]
    judged = [k for k in unfooled if len(paths.losses[k]) >= 2 * LAST_POINTS]
    moving = {k: still_moving(paths.losses[k]) for k in judged}
    flagged = [k for k in judged if moving[k] > STILL_MOVING]
    rises = sorted(moving.values())
    numbers: dict = {"eps": _r(cfg.eps), "robust samples examined": len(judged), "loss still rising": len(flagged),
                     "median rise over last 10 points": _r(rises[len(rises) // 2]) if rises else 0.0,
                     "threshold": STILL_MOVING}
    if not unfooled:
        return CheckResult(name, PASS, numbers, f"{paths.attack} left no sample robust: nothing to converge")
    if not judged:
        return CheckResult(name, NA, numbers, f"paths shorter than {2 * LAST_POINTS} points: too short to judge")
    if not flagged:
        return CheckResult(name, PASS, numbers,
                           "the attack's best loss had levelled off on every sample it left robust")
    ids = paths.idx[flagged]
    crafter = bench.precision.for_model(bench.model).differentiated(bench.model)
    points = [continue_pgd(crafter, bench.x[part].to(bench.device), bench.y[part].to(bench.device),
                           paths.last[rows].to(bench.device), cfg.eps, 2.5 * cfg.eps / PATH_STEPS, MORE_STEPS).cpu()
              for part, rows in zip(ids.split(bench.batch_size), torch.tensor(flagged).split(bench.batch_size))]
    broken = int((bench.decide(torch.cat(points)) != bench.y[ids]).sum())
    overstated = paths.robust_acc * broken / len(judged)
    tol = noise_tolerance(paths.robust_acc, bench.n)
    numbers |= {f"broken by {MORE_STEPS} more steps": broken, "robust acc overstated": _r(overstated),
                "noise": _r(tol)}
    rising = f"the loss of {len(flagged)} of {len(judged)} robust samples was still rising at the last step"
    if overstated > tol:
        status = FAIL
        why = f"{rising}, and {MORE_STEPS} more steps break {broken}: the attack stopped too early; give it more steps"
    elif broken:
        status, why = WARN, f"{rising}, and {MORE_STEPS} more steps break {broken} (within noise)"
    else:
        status, why = PASS, f"{rising}, but {MORE_STEPS} more steps break none of them"
    return CheckResult(name, status, numbers, why)


# --- transfer failure ------------------------------------------------------------------------------
@_timed
def check_transfer_failure(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """Transfer failure (Pintor et al. 2022): PGD crafted entirely on a solver surrogate (its
    gradients and its decisions, the whole budget) fools the surrogate but not the model."""
    name = "transfer failure (surrogate → model)"
    surrogates = ode_surrogates(bench.model, cfg)
    if not surrogates:
        return CheckResult(name, NA, {}, "not an ODE model: the audit transfers from no surrogate")
    idx = spread(torch.nonzero(bench.correct).flatten(), cfg.indicator_samples)
    x, y = bench.x[idx], bench.y[idx]
    numbers: dict = {"eps": _r(cfg.eps), "samples": len(idx)}
    worst, worst_name = 0.0, ""
    for label, surrogate in surrogates.items():
        # no early stop: a point barely past the surrogate's boundary is a weak transfer
        attack = GRADIENT_ATTACKS["PGD-10"](cfg).with_options(early_stop=False)
        points = []
        for i in range(0, len(idx), bench.batch_size):
            xb, yb = x[i : i + bench.batch_size].to(bench.device), y[i : i + bench.batch_size].to(bench.device)
            points.append(attack(surrogate, xb, yb, cfg.eps, ids=idx[i : i + bench.batch_size]).cpu())
        x_adv = torch.cat(points) if points else x
        fools_surrogate = _log_losses(surrogate, x_adv, y, bench)[1].argmax(dim=1) != y
        fools_model = bench.decide(x_adv) != y
        failed = int((fools_surrogate & ~fools_model).sum())
        numbers |= {f"fool {label}": int(fools_surrogate.sum()), f"fool {label} and the model": int(
            (fools_surrogate & fools_model).sum()), f"transfer failures via {label}": failed}
        if failed / max(len(idx), 1) >= worst:
            worst, worst_name = failed / max(len(idx), 1), label
    tol = noise_tolerance(worst, len(idx))
    numbers["noise"] = _r(tol)
    if worst > tol:
        status = WARN
        why = (f"adversarials of the {worst_name} surrogate often do not fool the model: the surrogate is not a "
               "faithful copy, so the surrogate row's pass is weak evidence; attack the model through its own solver")
    else:
        status, why = PASS, "what fools the solver surrogate fools the model too"
    return CheckResult(name, status, numbers, why)


# --- unstable predictions --------------------------------------------------------------------------
@_timed
def check_unstable_predictions(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """Unstable predictions (Pintor et al. 2022): on samples the audit's PGD-100 leaves robust, the
    cross-entropy moves on average by more than 10% of itself under tiny uniform input noise
    (±cfg.noise_scale·ε, cfg.noise_draws draws), *and* the move of its log that the input gradient
    does not predict, |log L(x+δ) − log L(x) − ∇log L(x)·δ|, averages above 0.1 too. The attack's
    loss is then too noisy to follow.

    The second condition keeps a steep but smooth loss quiet: its change under noise is first
    order, which is what a gradient attack follows; a randomised model, or an adaptive solver whose
    output jitters with its step count, changes in ways no gradient predicts. The log makes it
    blind to confidence: a confident sample's log cross-entropy is linear in its logit margin.
    (Whether identical calls agree is the model check "randomness".)"""
    robust = bench.robust(PATH_ATTACK, GRADIENT_ATTACKS[PATH_ATTACK](cfg), cfg.eps)
    idx = spread(torch.nonzero(robust).flatten(), cfg.indicator_samples)
    x, y = bench.x[idx], bench.y[idx]
    amplitude = cfg.noise_scale * cfg.eps
    changes, unexplained, flips = [], [], []
    if len(idx):
        log_loss, logits, grad = _log_losses(bench.model, x, y, bench, grad=True)
        rng = SampleRNG(cfg.seed, idx)
        for draw in range(cfg.noise_draws):
            noisy = (x + (2 * rng.uniform(tuple(x.shape[1:]), draw) - 1) * amplitude).clamp(0, 1)
            noisy_log_loss, noisy_logits = _log_losses(bench.model, noisy, y, bench)[:2]
            moved = noisy_log_loss - log_loss
            changes.append(torch.expm1(moved).abs())  # |L(x+δ) − L(x)| / L(x)
            unexplained.append((moved - (grad * (noisy - x).double()).flatten(1).sum(1)).abs())
            flips.append((noisy_logits.argmax(1) != logits.argmax(1)).float())
    relative = min(float(torch.stack(changes).mean()), 1.0) if changes else 0.0
    residual = min(float(torch.stack(unexplained).mean()), 1.0) if unexplained else 0.0
    flip_share = float(torch.stack(flips).mean()) if flips else 0.0
    numbers = {"noise (L∞)": _r(amplitude), "draws": cfg.noise_draws, f"{PATH_ATTACK}-robust samples": len(idx),
               "relative loss change": _r(relative), "not predicted by the gradient": _r(residual),
               "prediction flips": _r(flip_share), "threshold": UNSTABLE}
    moves = (f"under noise of ±{amplitude:.3g} the loss of robust samples moves by {relative:.1%} of itself, "
             f"{residual:.1%} not predicted by the gradient")
    if not len(idx):
        return CheckResult("unstable predictions", PASS, numbers, f"{PATH_ATTACK} left no sample robust: "
                                                                  "no robust verdict to question")
    if min(relative, residual) > UNSTABLE:
        status = FAIL
        why = f"{moves}: the model is randomised or its loss too noisy to follow; attack its expectation (EOT)"
    else:
        status, why = PASS, moves
    return CheckResult("unstable predictions", status, numbers, why)


# --- unconstrained attack failure ------------------------------------------------------------------
@_timed
def check_unconstrained(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """Unconstrained attack failure (Pintor et al. 2022): with ε = 1 (L∞ over [0, 1] images: any
    image is reachable) PGD from the clean image must fool every correctly classified sample."""
    steps = cfg.large_eps_steps
    attack = pgd(steps, UNBOUNDED_EPS, cfg.seed, random_start=False)
    robust = bench.robust(f"PGD-{steps}@{UNBOUNDED_EPS:g}", attack, UNBOUNDED_EPS)
    survived = int(robust.sum())
    correct = int(bench.correct.sum())
    tol = noise_tolerance(0.0, bench.n)
    numbers = {"eps": UNBOUNDED_EPS, "robust acc": _r(bench.accuracy(robust)), "samples not fooled": survived,
               "of correct": correct}
    if bench.accuracy(robust) > tol:
        status = FAIL
        why = (f"{survived} of {correct} samples survive an attack that may reach any image: the attack fails to "
               "optimise (flat or masked loss), so its bounded results say nothing")
    elif survived:
        status, why = WARN, "one sample survives an attack that may reach any image"
    else:
        status, why = PASS, "an attack that may reach any image fools every sample"
    return CheckResult(f"unconstrained attack (ε = 1, PGD-{steps}, no random start)", status, numbers, why)
