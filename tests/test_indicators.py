"""Specification of the Indicators of Attack Failure (Pintor et al., NeurIPS 2022) as audit rows:
each fires on a model or attack planted to fail the way it describes, and stays quiet on a plainly
trained MLP."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from robustbench_ode.diagnostics import AuditConfig, AuditedModel, run_checks
from robustbench_ode.diagnostics import attack_paths, audited, checks, gradients, indicators
from robustbench_ode.diagnostics.audited import FAIL, NA, PASS, WARN
from robustbench_ode.data import balanced_subset
from robustbench_ode.models.base import ImageClassifier
from robustbench_ode.registry import ATTACKS

from .test_audit import FAST, Quantised, SolverSwap


@pytest.fixture(scope="module")
def samples(digits) -> tuple[Tensor, Tensor]:
    idx = balanced_subset(digits.test_y, 100)
    return digits.test_x[idx], digits.test_y[idx]


class Detached(nn.Module):
    """`model` on a detached input: right answers, no input gradient at all (an interrupted graph)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.detach())


class Scaled(nn.Module):
    """`model` with its logits multiplied by `factor`: same decisions, a steeper (or saturated) loss."""

    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: Tensor) -> Tensor:
        return self.factor * self.model(x)


class NoisyLogits(nn.Module):
    """`model` plus fresh Gaussian noise on every logit at every call, in eval mode too."""

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: Tensor) -> Tensor:
        z = self.model(x)
        return z + self.sigma * torch.randn_like(z)


class Banded(nn.Module):
    """A 10-class toy that is wrong only inside a band the attack's path crosses.

    t is the mean pixel offset from grey in units of ε (|t| <= 1 in the ε-ball of a grey image).
    The true class 0 has logit 0; eight classes rise smoothly with t up to just below it (so the
    cross-entropy keeps rising all the way to t = 1), and class 1 beats class 0 only for
    0.2 < t < 0.5. PGD walks t from 0 to 1, through the band and out again.
    """

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        t = (x.flatten(1) - 0.5).mean(1) / self.eps
        band = ((t > 0.2) & (t < 0.5)).float() * 2 - 1
        rising = (-3 + 2.95 * t)[:, None].expand(-1, 8)
        return torch.cat([torch.zeros_like(t)[:, None], band[:, None], rising], dim=1)


def grey_images(n: int = 20) -> tuple[Tensor, Tensor]:
    """Grey 8x8 images with zero-mean texture (t = 0), all of class 0."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.2 - 0.1
    return x - x.flatten(1).mean(1).view(-1, 1, 1, 1) + 0.5, torch.zeros(n, dtype=torch.long)


def returns_last_iterate(cfg: AuditConfig):
    """The audit's PGD-100 without early stopping: it returns its last iterate, not its first adversarial one."""
    attack = audited.pgd(100, cfg.eps, cfg.seed).with_options(early_stop=False)
    return attack


def tiny_steps(cfg: AuditConfig):
    """PGD with 30 steps of ε/300: it can move 0.1·ε in all, so its loss is still rising when it stops."""
    return ATTACKS.get("pgd").build(steps=30, step_size=cfg.eps / 300, seed=cfg.seed)


def statuses(result) -> dict[str, str]:
    return {c.name.split(" (")[0]: c.status for c in result.checks}


# --- registration ----------------------------------------------------------------------------------
def test_every_indicator_is_a_registered_check_and_the_unconstrained_row_sits_beside_large_eps():
    names = [c.__name__ for c in checks.CHECKS]
    for check in ("check_silent_success", "check_incomplete_optimisation", "check_transfer_failure",
                  "check_unstable_predictions", "check_unconstrained"):
        assert check in names
    assert names.index("check_unconstrained") == names.index("check_large_eps") + 1
    assert "check_gradients" in names and not any("unavailable" in n for n in names)  # merged, not duplicated


# --- unavailable gradients ---------------------------------------------------------------------------
def test_unavailable_gradients_fire_on_an_interrupted_graph_and_gradient_rows_read_not_applicable(trained, samples):
    assert gradients.interrupted_graph(trained, samples[0]) is None
    assert "detached" in gradients.interrupted_graph(Detached(trained), samples[0])
    result = run_checks(Detached(trained), *samples, FAST)
    got = statuses(result)
    row = next(c for c in result.checks if c.name == "input gradients")
    assert row.status == FAIL and row.numbers == {"interrupted graph": "yes"}
    for name in ("large eps", "unconstrained", "more iterations", "silent success", "gradient free"):
        assert got[name] == NA
    assert result.verdict == FAIL


def test_unavailable_gradients_fire_on_zero_gradients_and_stay_quiet_on_a_plain_model(trained, samples):
    zero = checks.check_gradients(AuditedModel(Quantised(trained), *samples), FAST)
    assert zero.status == FAIL and zero.numbers["zero"] == 1.0
    assert checks.check_gradients(AuditedModel(trained, *samples), FAST).status == PASS


# --- unconstrained attack failure ----------------------------------------------------------------------
def test_unconstrained_attack_fails_when_saturated_logits_leave_pgd_no_gradient_at_eps_1(trained, samples):
    row = indicators.check_unconstrained(AuditedModel(Scaled(trained, 1e4), *samples), FAST)
    assert row.status == FAIL
    assert row.numbers["eps"] == 1.0 and row.numbers["samples not fooled"] > 0.9 * row.numbers["of correct"]


def test_unconstrained_attack_fools_every_sample_of_a_plain_model(trained, samples):
    row = indicators.check_unconstrained(AuditedModel(trained, *samples), FAST)
    assert row.status == PASS and row.numbers["robust acc"] == 0.0


# --- silent success ----------------------------------------------------------------------------------
def test_silent_success_fires_when_the_attack_returns_its_last_iterate_past_an_adversarial_band(monkeypatch):
    monkeypatch.setitem(audited.GRADIENT_ATTACKS, "PGD-100", returns_last_iterate)
    row = attack_paths.check_silent_success(AuditedModel(Banded(FAST.eps), *grey_images()), FAST)
    assert row.status == FAIL
    assert row.numbers["robust samples examined"] == 20 and row.numbers["silent successes"] == 20
    assert row.numbers["returned adversarial"] == 0


def test_silent_success_stays_quiet_when_pgd_keeps_its_first_adversarial_iterate(trained, samples):
    banded = attack_paths.check_silent_success(AuditedModel(Banded(FAST.eps), *grey_images()), FAST)
    assert banded.status == PASS and banded.numbers["PGD-100 robust acc"] == 0.0  # the band is found
    row = attack_paths.check_silent_success(AuditedModel(trained, *samples), FAST)
    assert row.status == PASS and row.numbers["robust samples examined"] > 0
    # the recorded run replays the cached one: what it returns is as unbroken as the verdict says
    assert row.numbers["returned adversarial"] == 0 and row.numbers["adversarial on path"] == 0


# --- incomplete optimisation -------------------------------------------------------------------------
def test_still_moving_is_the_late_rise_of_the_best_loss_rescaled_over_the_path():
    ramp = torch.linspace(0, 1, 101)
    assert attack_paths.still_moving(ramp) == pytest.approx(0.09)
    plateau = torch.cat([torch.linspace(0, 1, 50), torch.ones(51)])
    assert attack_paths.still_moving(plateau) == 0.0
    assert attack_paths.still_moving(torch.cat([ramp[:91], torch.zeros(10)])) == 0.0  # a late dip is no progress
    assert attack_paths.still_moving(torch.full((30,), 2.0)) == 0.0


def test_incomplete_optimisation_fires_when_tiny_steps_leave_the_loss_rising(trained, samples, monkeypatch):
    monkeypatch.setitem(audited.GRADIENT_ATTACKS, "PGD-100", tiny_steps)
    row = attack_paths.check_incomplete_optimisation(AuditedModel(trained, *samples), FAST)
    assert row.status == FAIL
    assert row.numbers["loss still rising"] == row.numbers["robust samples examined"] == 32
    assert row.numbers["robust acc overstated"] > row.numbers["noise"]


def test_incomplete_optimisation_stays_quiet_when_pgd_100_levels_off(trained, samples):
    row = attack_paths.check_incomplete_optimisation(AuditedModel(trained, *samples), FAST)
    assert row.status == PASS and row.numbers["robust samples examined"] > 0
    # a few paths may still creep up (2 of them with AVX2 kernels, 1 with AVX-512); more steps break none
    assert row.numbers["loss still rising"] <= max(2, row.numbers["robust samples examined"] // 10)
    assert row.numbers.get("broken by 100 more steps", 0) == 0


# --- transfer failure --------------------------------------------------------------------------------
def test_transfer_failure_fires_when_the_solver_surrogate_shares_nothing_with_the_model(trained, samples, digits):
    torch.manual_seed(1)
    stranger = ImageClassifier(digits.info, nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(),
                                                          nn.Linear(64, 10))).eval()
    row = indicators.check_transfer_failure(AuditedModel(SolverSwap(trained, surrogate=stranger), *samples), FAST)
    assert row.status == WARN
    label = next(iter(audited.ode_surrogates(SolverSwap(trained), FAST)))
    assert row.numbers[f"transfer failures via {label}"] > row.numbers["noise"] * row.numbers["samples"]


def test_transfer_failure_stays_quiet_for_a_faithful_surrogate_and_is_not_applicable_without_one(trained, samples):
    row = indicators.check_transfer_failure(AuditedModel(SolverSwap(trained), *samples), FAST)
    assert row.status == PASS and sum(v for k, v in row.numbers.items() if k.startswith("transfer failures")) == 0
    assert indicators.check_transfer_failure(AuditedModel(trained, *samples), FAST).status == NA


# --- unstable predictions ----------------------------------------------------------------------------
def test_unstable_predictions_fire_on_a_model_with_random_output_noise(trained, samples):
    torch.manual_seed(0)
    row = indicators.check_unstable_predictions(AuditedModel(NoisyLogits(trained, 0.3), *samples), FAST)
    assert row.status == FAIL
    assert row.numbers["relative loss change"] > indicators.UNSTABLE
    assert row.numbers["not predicted by the gradient"] > indicators.UNSTABLE


def test_unstable_predictions_stay_quiet_on_a_plain_model_and_on_a_steep_but_smooth_loss(trained, samples):
    plain = indicators.check_unstable_predictions(AuditedModel(trained, *samples), FAST)
    assert plain.status == PASS and plain.numbers["PGD-100-robust samples"] > 0
    steep = indicators.check_unstable_predictions(AuditedModel(Scaled(trained, 3.0), *samples), FAST)
    # Pintor et al.'s raw measure alone would fire; the gradient predicts the change, so it does not
    assert steep.numbers["relative loss change"] > indicators.UNSTABLE
    assert steep.numbers["not predicted by the gradient"] < indicators.UNSTABLE
    assert steep.status == PASS
