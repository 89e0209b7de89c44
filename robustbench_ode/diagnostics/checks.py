"""The gradient-masking sanity checks of Carlini et al. (2019, "On Evaluating Adversarial
Robustness", Sec. 5) and Athalye et al. (2018, "Obfuscated Gradients Give a False Sense of
Security"), each a function of a `Bench` (model + samples + shared attack runs) and an
`AuditConfig`, returning one `CheckResult` row."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..attacks.ball import lp_norm
from ..attacks.base import Attack, eval_mode
from ..attacks.gradient_from import GradientFrom
from ..evaluation.masking import LINF_ALL_GREY, noise_tolerance
from ..evaluation.verdict import VERIFY_ROUNDS, predict, robust_mask
from ..model_checks import inspect_model
from ..models.base import batch_dependent, first_solver, has_ode_solver, solver_surrogate
from ..precision import FP32, Precision
from ..registry import ATTACKS
from .gradients import gradient_stats

PASS, WARN, FAIL, NA = "pass", "warn", "fail", "n/a"
SEVERITY = {NA: 0, PASS: 0, WARN: 1, FAIL: 2}


@dataclass
class AuditConfig:
    """Radii and budgets of the audit; the defaults fit a small digits model in ~1-2 CPU minutes."""

    eps: float  # L∞ radius at which attacks are compared
    large_eps: float = LINF_ALL_GREY  # where accuracy must have fallen to chance
    margin: float = 0.1  # accuracy above chance tolerated at large_eps before failing
    large_eps_steps: int = 20
    apgd_steps: int = 100
    square_queries: int = 300
    spsa_steps: int = 10  # Adam learning rate 2.5·ε/steps, PGD's step rule
    spsa_samples: int = 16
    boundary_steps: int = 0  # > 0 adds the decision-based Boundary attack (slow; 1000 is the paper budget)
    surrogate_steps: int = 10  # rk4 steps over [0, t1] for the ODE surrogate
    fd_samples: int = 8
    fd_directions: int = 64
    fd_step: float = 1e-3
    min_cosine: float = 0.5  # median gradient/finite-difference cosine below this fails
    good_cosine: float = 0.9  # ... and below this warns
    max_vanishing: float = 0.1  # share of vanishing gradients above this fails
    indicator_samples: int = 32  # samples each indicator of attack failure examines (Pintor et al. 2022)
    noise_draws: int = 8  # unstable predictions: noise draws per sample ...
    noise_scale: float = 0.1  # ... uniform in ±noise_scale·eps
    batch_size: int = 250
    seed: int = 0


@dataclass
class CheckResult:
    """One row of the verdict table."""

    name: str
    status: str
    numbers: dict[str, Any]
    explanation: str
    seconds: float = 0.0


class Bench:
    """A model, the audited samples and a cache of per-attack robustness, so checks share runs.

    Robustness of a sample is the attack runner's verdict (`evaluation.verdict.robust_mask`):
    classified correctly by the model's decision on the clean input and on the adversarial one,
    claimed points re-checked and attacked further.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 250,
                 device: torch.device | str = "cpu", precision: Precision = FP32) -> None:
        self.model, self.x, self.y = model, x, y
        self.batch_size, self.device = batch_size, torch.device(device)
        self.precision = precision  # of gradient attacks' gradients; every decision is the fp32 model's
        self.correct = self.decide(x) == y
        self._robust: dict[str, Tensor] = {}
        self.cache: dict[str, Any] = {}  # other results checks share (e.g. recorded attack paths)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def chance(self) -> float:
        """The largest class share: what one constant prediction scores on these samples."""
        return float(torch.bincount(self.y).max()) / self.n

    def accuracy(self, mask: Tensor) -> float:
        return float(mask.float().mean())

    def decide(self, x: Tensor) -> Tensor:
        """The model's predicted labels (on CPU): one image at a time where batches could change them."""
        return predict(self.model, x, self.batch_size, self.device, batch_dependent(self.model))[0]

    def robust(self, label: str, attack: Attack, eps: float, source: nn.Module | None = None) -> Tensor:
        """Per-sample robustness to `attack` whose gradients come from `source` (default: the model;
        its decisions must be the model's, e.g. `GradientFrom`), cached by label."""
        if label not in self._robust:
            crafter = source or self.model
            precision = self.precision.for_model(self.model) if attack.uses_gradients else FP32
            self._robust[label] = robust_mask(
                attack, precision.differentiated(crafter), self.decide, self.x, self.y,
                self.correct, eps, self.batch_size, self.device, rounds=VERIFY_ROUNDS, further=crafter)[0]
        return self._robust[label]

    def robust_minimal(self, label: str, attack: Attack, eps: float) -> Tensor:
        """Robustness to a minimal-perturbation attack at L∞ radius `eps`: a sample falls when the
        adversarial found (whatever norm it minimised) lies within `eps` in L∞."""
        if label not in self._robust:
            robust = self.correct.clone()
            idx = torch.nonzero(self.correct).flatten()
            for i in range(0, len(idx), self.batch_size):
                part = idx[i : i + self.batch_size]
                xb, yb = self.x[part].to(self.device), self.y[part].to(self.device)
                with eval_mode(self.model):
                    x_adv, norms = attack.minimal(self.model, xb, yb)
                fooled = torch.isfinite(norms) & (lp_norm(x_adv - xb, "linf") <= eps)
                robust[part] = ~fooled.cpu()
            self._robust[label] = robust
        return self._robust[label]


def pgd(steps: int, eps: float, seed: int, restarts: int = 1, random_start: bool = True) -> Attack:
    """L∞ PGD with Madry et al.'s step size 2.5·ε/steps, so every budget can cross the ball."""
    return ATTACKS.get("pgd").build(steps=steps, step_size=2.5 * eps / steps, restarts=restarts,
                                    random_start=random_start, seed=seed)


GRADIENT_ATTACKS: dict[str, Callable[[AuditConfig], Attack]] = {
    "PGD-10": lambda c: pgd(10, c.eps, c.seed),
    "PGD-100": lambda c: pgd(100, c.eps, c.seed),
    "PGD-40x5": lambda c: pgd(40, c.eps, c.seed, restarts=5),
    "APGD-CE": lambda c: ATTACKS.get("apgd").build(steps=c.apgd_steps, seed=c.seed),
}


def best_gradient(bench: Bench, cfg: AuditConfig) -> tuple[str, Tensor]:
    """The strongest white-box attack at cfg.eps (lowest accuracy) and its robustness mask."""
    masks = {name: bench.robust(name, make(cfg), cfg.eps) for name, make in GRADIENT_ATTACKS.items()}
    name = min(masks, key=lambda k: bench.accuracy(masks[k]))
    return name, masks[name]


def _r(value: float) -> float:
    return round(float(value), 4)


def _timed(check: Callable[[Bench, AuditConfig], CheckResult]) -> Callable[[Bench, AuditConfig], CheckResult]:
    """Record the check's wall time in its row."""

    @functools.wraps(check)
    def run(bench: Bench, cfg: AuditConfig) -> CheckResult:
        t0 = time.perf_counter()
        result = check(bench, cfg)
        result.seconds = round(time.perf_counter() - t0, 2)
        return result

    return run


@_timed
def check_gradients(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """Input gradients exist, are finite, do not vanish, and match finite differences (of the margin).

    Also Pintor et al.'s (2022) "unavailable gradients" indicator: a graph that gives no input
    gradient at all (`indicators.interrupted_graph`) fails, and later gradient checks read n/a."""
    broken = interrupted_graph(bench.model, bench.x[:1].to(bench.device))
    if broken is not None:
        bench.cache[INTERRUPTED] = broken
        return CheckResult("input gradients", FAIL, {"interrupted graph": "yes"},
                           f"no input gradient ({broken}): gradient attacks cannot run")
    stats = gradient_stats(bench.model, bench.x.to(bench.device), bench.y.to(bench.device),
                           fd_samples=cfg.fd_samples, fd_directions=cfg.fd_directions, fd_step=cfg.fd_step,
                           seed=cfg.seed, batch_size=cfg.batch_size)
    cos = stats.median_cosine
    numbers = {"zero": _r(stats.zero), "nan/inf": _r(stats.nonfinite), "vanishing": _r(stats.vanishing),
               "median cos(grad, FD)": _r(cos), "FD samples": len(stats.cosines)}
    if stats.nonfinite > 0 or stats.vanishing > cfg.max_vanishing or not cos >= cfg.min_cosine:
        status = FAIL
        why = "gradients are missing or disagree with finite differences: gradient attacks cannot be trusted"
    elif stats.vanishing > 0 or cos < cfg.good_cosine:
        status = WARN
        why = "some gradients vanish or only roughly match finite differences"
    else:
        status = PASS
        why = "gradients are finite, non-vanishing and match central finite differences"
    return CheckResult("input gradients", status, numbers, why)


@_timed
def check_large_eps(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """PGD from the clean point (no random start, so only the gradient moves it) at a large ε
    must drive accuracy to chance: at L∞ ε >= 0.5 every image can be turned into the same grey."""
    attack = pgd(cfg.large_eps_steps, cfg.large_eps, cfg.seed, random_start=False)
    acc = bench.accuracy(bench.robust(f"PGD-{cfg.large_eps_steps}@{cfg.large_eps:g}", attack, cfg.large_eps))
    chance = bench.chance
    numbers = {"eps": _r(cfg.large_eps), "robust acc": _r(acc), "chance": _r(chance),
               "clean acc": _r(bench.accuracy(bench.correct))}
    if acc > chance + cfg.margin:
        status = FAIL
        why = f"accuracy stays {acc - chance:.2f} above chance at a huge ε: the attack cannot follow the gradient"
    elif acc > chance:
        status, why = WARN, "accuracy is slightly above chance at a huge ε"
    else:
        status, why = PASS, "accuracy falls to chance or below as ε grows large"
    return CheckResult(f"large ε (PGD-{cfg.large_eps_steps}, no random start)", status, numbers, why)


@_timed
def check_more_iterations(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """More PGD steps and restarts must never raise robust accuracy beyond noise."""
    accs = {name: bench.accuracy(bench.robust(name, GRADIENT_ATTACKS[name](cfg), cfg.eps))
            for name in ("PGD-10", "PGD-100", "PGD-40x5")}
    base = accs["PGD-10"]
    tol = noise_tolerance(base, bench.n)
    rise = max(accs["PGD-100"], accs["PGD-40x5"]) - base
    numbers = {"eps": _r(cfg.eps), **{k: _r(v) for k, v in accs.items()}, "noise": _r(tol)}
    if rise > tol:
        status, why = FAIL, f"a stronger PGD raised accuracy by {rise:.3f}: the loss surface misleads the attack"
    elif rise > 1 / bench.n:
        status, why = WARN, f"a stronger PGD raised accuracy by {rise:.3f}: more than one sample, within noise (±{tol:.3f})"
    else:
        status, why = PASS, f"more steps and restarts raised accuracy by one sample at most ({max(rise, 0):.3f} ≤ 1/{bench.n})"
    return CheckResult("more PGD steps / restarts", status, numbers, why)


@_timed
def check_gradient_free(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """Gradient-free attacks (Square, SPSA, Boundary) must not beat the best gradient attack."""
    best_name, best = best_gradient(bench, cfg)
    best_acc = bench.accuracy(best)
    tol = noise_tolerance(best_acc, bench.n)
    square = ATTACKS.get("square").build(queries=cfg.square_queries, seed=cfg.seed)
    spsa = ATTACKS.get("spsa").build(steps=cfg.spsa_steps, samples=cfg.spsa_samples,
                                     lr=2.5 * cfg.eps / max(cfg.spsa_steps, 1), seed=cfg.seed)
    black_box = {"Square": bench.robust("Square", square, cfg.eps), "SPSA": bench.robust("SPSA", spsa, cfg.eps)}
    if cfg.boundary_steps > 0:
        boundary = ATTACKS.get("boundary").build(steps=cfg.boundary_steps, seed=cfg.seed)
        black_box["Boundary"] = bench.robust_minimal("Boundary", boundary, cfg.eps)
    accs: dict[str, Any] = {name: bench.accuracy(mask) for name, mask in black_box.items()}
    fooled_black_box = ~torch.stack(list(black_box.values())).all(dim=0)
    only_share = bench.accuracy(fooled_black_box & _robust_to_all_gradient(bench, cfg))
    numbers = {"eps": _r(cfg.eps), f"best gradient ({best_name})": _r(best_acc), **{k: _r(v) for k, v in accs.items()},
               "fooled only gradient-free": _r(only_share), "noise": _r(tol)}
    if cfg.boundary_steps == 0:
        numbers["Boundary"] = "skipped (boundary_steps=0)"
    winner = min(accs, key=accs.get)
    if accs[winner] < best_acc - tol:
        status = FAIL
        why = f"{winner} beats every gradient attack by {best_acc - accs[winner]:.3f}: gradients are masked"
    elif only_share > tol:
        status, why = WARN, "gradient-free attacks fool samples that every gradient attack missed"
    else:
        status, why = PASS, "gradient-free attacks do not beat the gradient attacks"
    return CheckResult("gradient-free vs gradient attacks", status, numbers, why)


def _robust_to_all_gradient(bench: Bench, cfg: AuditConfig) -> Tensor:
    """Samples no gradient attack fooled."""
    masks = [bench.robust(name, make(cfg), cfg.eps) for name, make in GRADIENT_ATTACKS.items()]
    return torch.stack(masks).all(dim=0)


def ode_surrogates(model: nn.Module, cfg: AuditConfig) -> dict[str, nn.Module]:
    """Same-weight models to attack through: fixed-step rk4 and, for an adjoint model, direct
    back-propagation through the model's own solver. Empty for a model without an ODE solver."""
    if not has_ode_solver(model):
        return {}
    solver, t1, adjoint = first_solver(model) or ("", 1.0, False)
    step = t1 / cfg.surrogate_steps
    surrogates = {f"rk4 h={step:g}": solver_surrogate(model, solver="rk4", step_size=step, adjoint=False)}
    if adjoint:
        surrogates[f"{solver}, no adjoint"] = solver_surrogate(model, solver=solver, adjoint=False)
    return surrogates


@_timed
def check_surrogate(bench: Bench, cfg: AuditConfig) -> CheckResult:
    """PGD whose gradients come from a fixed-step / adjoint-free surrogate of an ODE model (same
    weights) while the real model decides (`GradientFrom`) must not beat the model's own gradients."""
    surrogates = ode_surrogates(bench.model, cfg)
    if not surrogates:
        return CheckResult("ODE solver surrogate", NA, {}, "not an ODE model: there is no solver to swap")
    best_name, best = best_gradient(bench, cfg)
    best_acc = bench.accuracy(best)
    tol = noise_tolerance(best_acc, bench.n)
    accs = {name: bench.accuracy(bench.robust(f"PGD-40x5 via {name}", GRADIENT_ATTACKS["PGD-40x5"](cfg), cfg.eps,
                                              source=GradientFrom(bench.model, surrogate)))
            for name, surrogate in surrogates.items()}
    numbers = {"eps": _r(cfg.eps), f"own gradients ({best_name})": _r(best_acc),
               **{f"via {k}": _r(v) for k, v in accs.items()}, "noise": _r(tol)}
    winner = min(accs, key=accs.get)
    if accs[winner] < best_acc - tol:
        status = FAIL
        why = (f"attacking via {winner} beats the model's own gradients by {best_acc - accs[winner]:.3f}: "
               "solver gradients are obfuscated")
    elif accs[winner] < best_acc - 1 / bench.n:
        status, why = WARN, f"attacking via {winner} is stronger by more than one sample (within noise)"
    else:
        status, why = PASS, "the model's own gradients are at least as strong as a fixed-step surrogate's"
    return CheckResult("ODE solver surrogate (PGD-40x5, surrogate gradients)", status, numbers, why)


INTERRUPTED = "interrupted graph"  # bench.cache key: why the model gives no input gradient

# the indicators of attack failure build on the names above
from .indicators import (  # noqa: E402
    check_incomplete_optimisation, check_silent_success, check_transfer_failure, check_unconstrained,
    check_unstable_predictions, interrupted_graph,
)

CHECKS: tuple[Callable[[Bench, AuditConfig], CheckResult], ...] = (
    check_gradients, check_large_eps, check_unconstrained, check_more_iterations, check_silent_success,
    check_incomplete_optimisation, check_gradient_free, check_surrogate, check_transfer_failure,
    check_unstable_predictions,
)


@dataclass
class AuditResult:
    """All check rows plus what was audited."""

    checks: list[CheckResult]
    n: int
    clean_acc: float
    chance: float
    config: AuditConfig

    @property
    def verdict(self) -> str:
        worst = max((SEVERITY[c.status] for c in self.checks), default=0)
        return {0: PASS, 1: WARN, 2: FAIL}[worst]


def run_checks(model: nn.Module, x: Tensor, y: Tensor, cfg: AuditConfig, device: torch.device | str = "cpu",
               on_check: Callable[[str], None] | None = None, precision: Precision = FP32) -> AuditResult:
    """Run every check on `model` (pixels in [0, 1] -> logits) over the samples (x, y); gradient
    attacks' gradients in `precision` (decisions always fp32)."""
    bench = Bench(model, x, y, batch_size=cfg.batch_size, device=device, precision=precision)
    results = [CheckResult(f"model check: {f.check}", f.status, f.numbers, f.message)
               for f in inspect_model(model, x[:4].to(bench.device))]
    for check in CHECKS:
        label = check.__name__.removeprefix("check_").replace("_", " ")
        if on_check:
            on_check(label)
        try:
            results.append(check(bench, cfg))
        except RuntimeError:
            if INTERRUPTED not in bench.cache:
                raise
            results.append(CheckResult(label, NA, {}, "needs input gradients, and the model gives none "
                                                      "(see input gradients)"))
    return AuditResult(results, bench.n, bench.accuracy(bench.correct), bench.chance, cfg)
