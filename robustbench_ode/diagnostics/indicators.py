"""The Indicators of Attack Failure (Pintor et al., "Indicators of Attack Failure: Debugging and
Improving Optimization of Adversarial Examples", NeurIPS 2022) as audit checks: the three that
need no recorded attack path here, the two that do in `attack_paths`.

Each indicator is a check `(audited, cfg) -> CheckResult` like those of `checks`. How the paper's
six indicators map onto the audit (one row each, none duplicated):

- unavailable gradients: `checks.check_gradients` (the input-gradient row) covers zero, NaN/inf
  and vanishing gradients; `gradients.interrupted_graph` adds the paper's other case, a graph that gives no
  input gradient at all, and fails that row.
- unconstrained attack failure: `check_unconstrained`, beside `checks.check_large_eps`: at L∞
  ε = 1 (any image is reachable) PGD must fool every correctly classified sample, where the
  large-ε row only asks for chance at ε = 0.5.
- silent success and incomplete optimisation: `attack_paths.check_silent_success` and
  `attack_paths.check_incomplete_optimisation`, both from one recorded run (`attack_paths`) of the audit's own
  PGD-100 on samples it leaves robust, every point the attack evaluates kept with its loss.
- transfer failure: `check_transfer_failure`, adversarials crafted entirely on the ODE solver
  surrogates of `checks.check_surrogate` that fool the surrogate but not the model.
- unstable predictions: `check_unstable_predictions`, the relative loss change under small
  uniform input noise (whether identical calls agree is the model check "randomness").

Each runs on at most `cfg.indicator_samples` samples so the audit stays fast.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attacks.base import eval_mode
from ..attacks.sampling import SampleRNG
from ..evaluation.masking import noise_tolerance
from ..models.base import batch_dependent
from .attack_paths import PATH_ATTACK, spread
from .audited import (FAIL, GRADIENT_ATTACKS, NA, PASS, WARN, AuditConfig, AuditedModel, CheckResult, ode_surrogates,
                      pgd, round4, timed)

# Their unstable-predictions threshold: a mean relative loss change above 0.1 under small noise.
UNSTABLE = 0.1
UNBOUNDED_EPS = 1.0  # L∞ radius of the unconstrained attack: every image in [0, 1] is reachable


def log_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """log of each sample's cross-entropy, in float64 and exact where the cross-entropy itself
    rounds to 0: CE = log1p(e^d) with d = logsumexp of the other logits − the true one, so
    log CE = d for d < −30 (where log1p(e^d) = e^d to 1e-13). A confident sample's log CE is then
    linear in its logit margin, however confident it is."""
    z = logits.double()
    true = z.gather(1, y[:, None]).squeeze(1)
    d = z.scatter(1, y[:, None], float("-inf")).logsumexp(dim=1) - true
    return torch.where(d < -30, d, torch.log(torch.log1p(torch.exp(d.clamp_min(-30)))))


def _log_losses(model: nn.Module, x: Tensor, y: Tensor, audited: AuditedModel,
                grad: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-sample log cross-entropy, logits and (with `grad`) the input gradient of the log
    cross-entropy, all on CPU, of `model` in eval mode, batched as the audited model decides (one image at
    a time for a batch-dependent model)."""
    size = 1 if batch_dependent(model) else audited.batch_size
    losses, logits, grads = [], [], []
    with eval_mode(model), torch.set_grad_enabled(grad):
        for i in range(0, len(x), size):
            xb = x[i : i + size].to(audited.device).detach().requires_grad_(grad)
            z = model(xb)
            loss = log_cross_entropy(z, y[i : i + size].to(audited.device))
            if grad:
                grads.append(torch.autograd.grad(loss.sum(), xb)[0].detach().cpu().double())
            losses.append(loss.detach().cpu())
            logits.append(z.detach().cpu())
    return torch.cat(losses), torch.cat(logits), (torch.cat(grads) if grad else None)


# --- transfer failure ------------------------------------------------------------------------------
@timed
def check_transfer_failure(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
    """Transfer failure (Pintor et al. 2022): PGD crafted entirely on a solver surrogate (its
    gradients and its decisions, the whole budget) fools the surrogate but not the model."""
    name = "transfer failure (surrogate → model)"
    surrogates = ode_surrogates(audited.model, cfg)
    if not surrogates:
        return CheckResult(name, NA, {}, "not an ODE model: the audit transfers from no surrogate")
    idx = spread(torch.nonzero(audited.correct).flatten(), cfg.indicator_samples)
    x, y = audited.x[idx], audited.y[idx]
    numbers: dict = {"eps": round4(cfg.eps), "samples": len(idx)}
    worst, worst_name = 0.0, ""
    for label, surrogate in surrogates.items():
        # no early stop: a point barely past the surrogate's boundary is a weak transfer
        attack = GRADIENT_ATTACKS["PGD-10"](cfg).with_options(early_stop=False)
        points = []
        for i in range(0, len(idx), audited.batch_size):
            xb, yb = x[i : i + audited.batch_size].to(audited.device), y[i : i + audited.batch_size].to(audited.device)
            points.append(attack(surrogate, xb, yb, cfg.eps, ids=idx[i : i + audited.batch_size]).cpu())
        x_adv = torch.cat(points) if points else x
        fools_surrogate = _log_losses(surrogate, x_adv, y, audited)[1].argmax(dim=1) != y
        fools_model = audited.decide(x_adv) != y
        failed = int((fools_surrogate & ~fools_model).sum())
        numbers |= {f"fool {label}": int(fools_surrogate.sum()), f"fool {label} and the model": int(
            (fools_surrogate & fools_model).sum()), f"transfer failures via {label}": failed}
        if failed / max(len(idx), 1) >= worst:
            worst, worst_name = failed / max(len(idx), 1), label
    tol = noise_tolerance(worst, len(idx))
    numbers["noise"] = round4(tol)
    if worst > tol:
        status = WARN
        why = (f"adversarials of the {worst_name} surrogate often do not fool the model: the surrogate is not a "
               "faithful copy, so the surrogate row's pass is weak evidence; attack the model through its own solver")
    else:
        status, why = PASS, "what fools the solver surrogate fools the model too"
    return CheckResult(name, status, numbers, why)


# --- unstable predictions --------------------------------------------------------------------------
@timed
def check_unstable_predictions(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
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
    robust = audited.robust(PATH_ATTACK, GRADIENT_ATTACKS[PATH_ATTACK](cfg), cfg.eps)
    idx = spread(torch.nonzero(robust).flatten(), cfg.indicator_samples)
    x, y = audited.x[idx], audited.y[idx]
    amplitude = cfg.noise_scale * cfg.eps
    changes, unexplained, flips = [], [], []
    if len(idx):
        log_loss, logits, grad = _log_losses(audited.model, x, y, audited, grad=True)
        rng = SampleRNG(cfg.seed, idx)
        for draw in range(cfg.noise_draws):
            noisy = (x + (2 * rng.uniform(tuple(x.shape[1:]), draw) - 1) * amplitude).clamp(0, 1)
            noisy_log_loss, noisy_logits = _log_losses(audited.model, noisy, y, audited)[:2]
            moved = noisy_log_loss - log_loss
            changes.append(torch.expm1(moved).abs())  # |L(x+δ) − L(x)| / L(x)
            unexplained.append((moved - (grad * (noisy - x).double()).flatten(1).sum(1)).abs())
            flips.append((noisy_logits.argmax(1) != logits.argmax(1)).float())
    relative = min(float(torch.stack(changes).mean()), 1.0) if changes else 0.0
    residual = min(float(torch.stack(unexplained).mean()), 1.0) if unexplained else 0.0
    flip_share = float(torch.stack(flips).mean()) if flips else 0.0
    numbers = {"noise (L∞)": round4(amplitude), "draws": cfg.noise_draws, f"{PATH_ATTACK}-robust samples": len(idx),
               "relative loss change": round4(relative), "not predicted by the gradient": round4(residual),
               "prediction flips": round4(flip_share), "threshold": UNSTABLE}
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
@timed
def check_unconstrained(audited: AuditedModel, cfg: AuditConfig) -> CheckResult:
    """Unconstrained attack failure (Pintor et al. 2022): with ε = 1 (L∞ over [0, 1] images: any
    image is reachable) PGD from the clean image must fool every correctly classified sample."""
    steps = cfg.large_eps_steps
    attack = pgd(steps, UNBOUNDED_EPS, cfg.seed, random_start=False)
    robust = audited.robust(f"PGD-{steps}@{UNBOUNDED_EPS:g}", attack, UNBOUNDED_EPS)
    survived = int(robust.sum())
    correct = int(audited.correct.sum())
    tol = noise_tolerance(0.0, audited.n)
    numbers = {"eps": UNBOUNDED_EPS, "robust acc": round4(audited.accuracy(robust)), "samples not fooled": survived,
               "of correct": correct}
    if audited.accuracy(robust) > tol:
        status = FAIL
        why = (f"{survived} of {correct} samples survive an attack that may reach any image: the attack fails to "
               "optimise (flat or masked loss), so its bounded results say nothing")
    elif survived:
        status, why = WARN, "one sample survives an attack that may reach any image"
    else:
        status, why = PASS, "an attack that may reach any image fools every sample"
    return CheckResult(f"unconstrained attack (ε = 1, PGD-{steps}, no random start)", status, numbers, why)
