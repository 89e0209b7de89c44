"""What every audit check works on: its settings (`AuditConfig`), its result row (`CheckResult`),
and the `AuditedModel` (model + samples + a cache of per-attack robustness, so checks share
attack runs), with the attacks and helpers the checks of `checks` and `indicators` share."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..attacks.ball import lp_norm
from ..attacks.base import Attack, eval_mode
from ..evaluation.masking import LINF_ALL_GREY
from ..evaluation.verdict import VERIFY_ROUNDS, predict, robust_mask
from ..models.base import batch_dependent, first_solver, has_ode_solver, solver_surrogate
from ..precision import FP32, Precision
from ..registry import ATTACKS

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


class AuditedModel:
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


def best_gradient(audited: AuditedModel, cfg: AuditConfig) -> tuple[str, Tensor]:
    """The strongest white-box attack at cfg.eps (lowest accuracy) and its robustness mask."""
    masks = {name: audited.robust(name, make(cfg), cfg.eps) for name, make in GRADIENT_ATTACKS.items()}
    name = min(masks, key=lambda k: audited.accuracy(masks[k]))
    return name, masks[name]


def round4(value: float) -> float:
    """A number as the verdict table shows it: 4 decimals."""
    return round(float(value), 4)


def timed(check: Callable[[AuditedModel, AuditConfig], CheckResult]) -> Callable[[AuditedModel, AuditConfig], CheckResult]:
    """Record the check's wall time in its row."""

    @functools.wraps(check)
    def run(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
        t0 = time.perf_counter()
        result = check(audited, cfg)
        result.seconds = round(time.perf_counter() - t0, 2)
        return result

    return run


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


INTERRUPTED = "interrupted graph"  # audited.cache key: why the model gives no input gradient
