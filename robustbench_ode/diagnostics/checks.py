"""The gradient-masking sanity checks of Carlini et al. (2019, "On Evaluating Adversarial
Robustness", Sec. 5) and Athalye et al. (2018, "Obfuscated Gradients Give a False Sense of
Security"), each a function of an `AuditedModel` and an `AuditConfig` returning one
`CheckResult` row; with the indicators of attack failure (`indicators`, `attack_paths`) they
make the audit (`CHECKS`, `run_checks`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..attacks.gradient_from import GradientFrom
from ..evaluation.masking import noise_tolerance
from ..model_checks import inspect_model
from ..precision import FP32, Precision
from ..progress import SILENT, Reporter
from ..registry import ATTACKS
from .attack_paths import check_incomplete_optimisation, check_silent_success
from .audited import (FAIL, GRADIENT_ATTACKS, INTERRUPTED, NA, PASS, SEVERITY, WARN, AuditConfig, AuditedModel,
                      CheckResult, best_gradient, ode_surrogates, pgd, round4, timed)
from .gradients import gradient_stats, interrupted_graph
from .indicators import check_transfer_failure, check_unconstrained, check_unstable_predictions

@timed
def check_gradients(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
    """Input gradients exist, are finite, do not vanish, and match finite differences (of the margin).

    Also Pintor et al.'s (2022) "unavailable gradients" indicator: a graph that gives no input
    gradient at all (`gradients.interrupted_graph`) fails, and later gradient checks read n/a."""
    broken = interrupted_graph(audited.model, audited.x[:1].to(audited.device))
    if broken is not None:
        audited.cache[INTERRUPTED] = broken
        return CheckResult("input gradients", FAIL, {"interrupted graph": "yes"},
                           f"no input gradient ({broken}): gradient attacks cannot run")
    stats = gradient_stats(audited.model, audited.x.to(audited.device), audited.y.to(audited.device),
                           fd_samples=cfg.fd_samples, fd_directions=cfg.fd_directions, fd_step=cfg.fd_step,
                           seed=cfg.seed, batch_size=cfg.batch_size)
    cos = stats.median_cosine
    numbers = {"zero": round4(stats.zero), "nan/inf": round4(stats.nonfinite), "vanishing": round4(stats.vanishing),
               "median cos(grad, FD)": round4(cos), "FD samples": len(stats.cosines)}
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


@timed
def check_large_eps(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
    """PGD from the clean point (no random start, so only the gradient moves it) at a large ε
    must drive accuracy to chance: at L∞ ε >= 0.5 every image can be turned into the same grey."""
    attack = pgd(cfg.large_eps_steps, cfg.large_eps, cfg.seed, random_start=False)
    acc = audited.accuracy(audited.robust(f"PGD-{cfg.large_eps_steps}@{cfg.large_eps:g}", attack, cfg.large_eps))
    chance = audited.chance
    numbers = {"eps": round4(cfg.large_eps), "robust acc": round4(acc), "chance": round4(chance),
               "clean acc": round4(audited.accuracy(audited.correct))}
    if acc > chance + cfg.margin:
        status = FAIL
        why = f"accuracy stays {acc - chance:.2f} above chance at a huge ε: the attack cannot follow the gradient"
    elif acc > chance:
        status, why = WARN, "accuracy is slightly above chance at a huge ε"
    else:
        status, why = PASS, "accuracy falls to chance or below as ε grows large"
    return CheckResult(f"large ε (PGD-{cfg.large_eps_steps}, no random start)", status, numbers, why)


@timed
def check_more_iterations(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
    """More PGD steps and restarts must never raise robust accuracy beyond noise."""
    accs = {name: audited.accuracy(audited.robust(name, GRADIENT_ATTACKS[name](cfg), cfg.eps))
            for name in ("PGD-10", "PGD-100", "PGD-40x5")}
    base = accs["PGD-10"]
    tol = noise_tolerance(base, audited.n)
    rise = max(accs["PGD-100"], accs["PGD-40x5"]) - base
    numbers = {"eps": round4(cfg.eps), **{k: round4(v) for k, v in accs.items()}, "noise": round4(tol)}
    if rise > tol:
        status, why = FAIL, f"a stronger PGD raised accuracy by {rise:.3f}: the loss surface misleads the attack"
    elif rise > 1 / audited.n:
        status, why = WARN, f"a stronger PGD raised accuracy by {rise:.3f}: more than one sample, within noise (±{tol:.3f})"
    else:
        status, why = PASS, f"more steps and restarts raised accuracy by one sample at most ({max(rise, 0):.3f} ≤ 1/{audited.n})"
    return CheckResult("more PGD steps / restarts", status, numbers, why)


@timed
def check_gradient_free(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
    """Gradient-free attacks (Square, SPSA, Boundary) must not beat the best gradient attack."""
    best_name, best = best_gradient(audited, cfg)
    best_acc = audited.accuracy(best)
    tol = noise_tolerance(best_acc, audited.n)
    square = ATTACKS.get("square").build(queries=cfg.square_queries, seed=cfg.seed)
    spsa = ATTACKS.get("spsa").build(steps=cfg.spsa_steps, samples=cfg.spsa_samples,
                                     lr=2.5 * cfg.eps / max(cfg.spsa_steps, 1), seed=cfg.seed)
    black_box = {"Square": audited.robust("Square", square, cfg.eps), "SPSA": audited.robust("SPSA", spsa, cfg.eps)}
    if cfg.boundary_steps > 0:
        boundary = ATTACKS.get("boundary").build(steps=cfg.boundary_steps, seed=cfg.seed)
        black_box["Boundary"] = audited.robust_minimal("Boundary", boundary, cfg.eps)
    accs: dict[str, Any] = {name: audited.accuracy(mask) for name, mask in black_box.items()}
    fooled_black_box = ~torch.stack(list(black_box.values())).all(dim=0)
    only_share = audited.accuracy(fooled_black_box & _robust_to_all_gradient(audited, cfg))
    numbers = {"eps": round4(cfg.eps), f"best gradient ({best_name})": round4(best_acc), **{k: round4(v) for k, v in accs.items()},
               "fooled only gradient-free": round4(only_share), "noise": round4(tol)}
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


def _robust_to_all_gradient(audited: AuditedModel, cfg: AuditConfig) -> Tensor:
    """Samples no gradient attack fooled."""
    masks = [audited.robust(name, make(cfg), cfg.eps) for name, make in GRADIENT_ATTACKS.items()]
    return torch.stack(masks).all(dim=0)


@timed
def check_surrogate(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
    """PGD whose gradients come from a fixed-step / adjoint-free surrogate of an ODE model (same
    weights) while the real model decides (`GradientFrom`) must not beat the model's own gradients."""
    surrogates = ode_surrogates(audited.model, cfg)
    if not surrogates:
        return CheckResult("ODE solver surrogate", NA, {}, "not an ODE model: there is no solver to swap")
    best_name, best = best_gradient(audited, cfg)
    best_acc = audited.accuracy(best)
    tol = noise_tolerance(best_acc, audited.n)
    accs = {name: audited.accuracy(audited.robust(f"PGD-40x5 via {name}", GRADIENT_ATTACKS["PGD-40x5"](cfg), cfg.eps,
                                              source=GradientFrom(audited.model, surrogate)))
            for name, surrogate in surrogates.items()}
    numbers = {"eps": round4(cfg.eps), f"own gradients ({best_name})": round4(best_acc),
               **{f"via {k}": round4(v) for k, v in accs.items()}, "noise": round4(tol)}
    winner = min(accs, key=accs.get)
    if accs[winner] < best_acc - tol:
        status = FAIL
        why = (f"attacking via {winner} beats the model's own gradients by {best_acc - accs[winner]:.3f}: "
               "solver gradients are obfuscated")
    elif accs[winner] < best_acc - 1 / audited.n:
        status, why = WARN, f"attacking via {winner} is stronger by more than one sample (within noise)"
    else:
        status, why = PASS, "the model's own gradients are at least as strong as a fixed-step surrogate's"
    return CheckResult("ODE solver surrogate (PGD-40x5, surrogate gradients)", status, numbers, why)


CHECKS: tuple[Callable[[AuditedModel, AuditConfig], CheckResult], ...] = (
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
               reporter: Reporter = SILENT, precision: Precision = FP32) -> AuditResult:
    """Run every check on `model` (pixels in [0, 1] -> logits) over the samples (x, y), naming the
    check under way on `reporter`'s status line; gradient attacks' gradients in `precision`
    (decisions always fp32)."""
    audited = AuditedModel(model, x, y, batch_size=cfg.batch_size, device=device, precision=precision)
    results = [CheckResult(f"model check: {f.check}", f.status, f.numbers, f.message)
               for f in inspect_model(model, x[:4].to(audited.device))]
    with reporter.status("auditing") as status:
        for check in CHECKS:
            label = check.__name__.removeprefix("check_").replace("_", " ")
            status.update(f"audit: {label}")
            try:
                results.append(check(audited, cfg))
            except RuntimeError:
                if INTERRUPTED not in audited.cache:
                    raise
                results.append(CheckResult(label, NA, {}, "needs input gradients, and the model gives none "
                                                          "(see input gradients)"))
    return AuditResult(results, audited.n, audited.accuracy(audited.correct), audited.chance, cfg)
