"""Specification of `odebench audit`: a plainly trained model passes the gradient-masking checks,
deliberately masked models fail the rows that describe their masking, and the masking red flag
for single result rows."""
from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from robustbench_ode.attacks.base import Attack
from robustbench_ode.diagnostics import AuditConfig, AuditedModel, run_checks
from robustbench_ode.diagnostics import audited, checks
from robustbench_ode.diagnostics.audited import FAIL, NA, PASS, ode_surrogates
from robustbench_ode.data import balanced_subset
from robustbench_ode.evaluation.masking import looks_masked, noise_tolerance
from robustbench_ode.models import build_model

from .helpers import odebench, train_tiny

# budgets small enough for a fraction of a second per attack on the digits MLP
FAST = AuditConfig(eps=0.1, apgd_steps=20, square_queries=100, spsa_steps=5, spsa_samples=8, fd_samples=4)


@pytest.fixture(scope="module")
def samples(digits) -> tuple[Tensor, Tensor]:
    idx = balanced_subset(digits.test_y, 100)
    return digits.test_x[idx], digits.test_y[idx]


class Quantised(nn.Module):
    """`model` on inputs rounded to the 1/16 grid digits are stored on: same accuracy, but
    round() has a zero derivative, so every input gradient is exactly zero."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.round(x * 16) / 16)


class _Negate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return -grad


class FlippedGradient(nn.Module):
    """`model` with the sign of its input gradient flipped: non-zero gradients that point away."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(_Negate.apply(x))


class SolverSwap(nn.Module):
    """An 'ODE model' whose `with_solver` surrogate is `surrogate` (same role as ODEClassifier)."""

    def __init__(self, model: nn.Module, surrogate: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.surrogate = surrogate

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def with_solver(self, **options: object) -> nn.Module:
        return self.surrogate if self.surrogate is not None else self


def statuses(result) -> dict[str, str]:
    return {c.name.split(" (")[0]: c.status for c in result.checks}


# --- the checks ------------------------------------------------------------------------------
def test_a_plainly_trained_model_passes_every_check_and_the_surrogate_row_is_not_applicable(trained, samples):
    result = run_checks(trained, *samples, FAST)
    expected = {"input gradients": PASS, "large ε": PASS, "more PGD steps / restarts": PASS,
                "gradient-free vs gradient attacks": PASS, "ODE solver surrogate": NA,
                # the indicators of attack failure (Pintor et al. 2022, tests/test_indicators.py)
                "unconstrained attack": PASS, "silent success": PASS, "incomplete optimisation": PASS,
                "transfer failure": NA, "unstable predictions": PASS}
    got = statuses(result)
    assert {k: got.get(k) for k in expected} == expected
    assert result.verdict == PASS


def test_a_model_with_zero_input_gradients_fails_gradient_large_eps_and_gradient_free_rows(trained, samples):
    result = run_checks(Quantised(trained), *samples, FAST)
    got = statuses(result)
    assert got["input gradients"] == FAIL and got["large ε"] == FAIL
    assert got["gradient-free vs gradient attacks"] == FAIL
    assert result.verdict == FAIL
    grads = next(c for c in result.checks if c.name == "input gradients").numbers
    assert grads["zero"] == 1.0 and grads["vanishing"] == 1.0 and grads["median cos(grad, FD)"] == 0.0


def test_gradients_that_disagree_with_finite_differences_fail(trained, samples):
    x, y = samples
    audited_model = AuditedModel(FlippedGradient(trained), x, y)
    row = checks.check_gradients(audited_model, FAST)
    assert row.status == FAIL
    assert row.numbers["vanishing"] == 0.0 and row.numbers["median cos(grad, FD)"] < -0.9


def test_more_iterations_fail_when_a_longer_attack_leaves_more_samples_correct(trained, samples, monkeypatch):
    class DoesNothing(Attack):
        def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
            return x

    monkeypatch.setitem(audited.GRADIENT_ATTACKS, "PGD-100", lambda cfg: DoesNothing())
    row = checks.check_more_iterations(AuditedModel(trained, *samples), FAST)
    assert row.status == FAIL
    assert row.numbers["PGD-100"] - row.numbers["PGD-10"] > row.numbers["noise"]


def test_attacking_through_a_solver_surrogate_fails_when_it_beats_the_models_own_gradients(trained, samples):
    masked_ode = SolverSwap(Quantised(trained), surrogate=trained)
    row = checks.check_surrogate(AuditedModel(masked_ode, *samples), FAST)
    assert row.status == FAIL
    honest_ode = SolverSwap(trained)
    assert checks.check_surrogate(AuditedModel(honest_ode, *samples), FAST).status == PASS


@pytest.mark.parametrize("adjoint", [False, True])
def test_ode_surrogates_share_weights_and_step_with_rk4_and_without_the_adjoint(digits, adjoint):
    model = build_model("odenet", digits.info, channels=4, conv_layers=1, t1=2.0, adjoint=adjoint)
    surrogates = ode_surrogates(model, FAST)
    assert len(surrogates) == (2 if adjoint else 1)
    for surrogate in surrogates.values():
        assert not surrogate.body.block.config.adjoint
        assert surrogate.body.block.func is model.body.block.func
    rk4 = next(iter(surrogates.values())).body.block.config
    assert rk4.solver == "rk4" and rk4.step_size == pytest.approx(2.0 / FAST.surrogate_steps)
    assert ode_surrogates(build_model("resnet_small", digits.info, width=4), FAST) == {}


# --- looks_masked --------------------------------------------------------------------------------
def test_noise_tolerance_is_two_standard_errors_and_at_least_one_sample():
    assert noise_tolerance(0.5, 100) == pytest.approx(2 * (0.25 / 100) ** 0.5)
    assert noise_tolerance(0.0, 100) == pytest.approx(1 / 100)


def test_accuracy_above_chance_at_linf_half_is_flagged_and_chance_is_not():
    assert "above chance" in looks_masked({"eps": 0.5, "robust_acc": 0.6, "norm": "linf"})
    assert looks_masked({"eps": 0.5, "robust_acc": 0.1, "norm": "linf"}) is None
    assert looks_masked({"eps": 0.3, "robust_acc": 0.9, "norm": "linf"}) is None  # MNIST-robust models do this
    assert looks_masked({"eps": 0.5, "robust_acc": 0.6, "norm": "l2"}) is None
    assert looks_masked({"eps": 0.5, "robust_acc": 0.4}, num_classes=2) is None


def test_accuracy_rising_with_eps_beyond_noise_is_flagged():
    rows = [{"eps": e, "robust_acc": a, "n": 1000} for e, a in [(0.1, 0.5), (0.2, 0.3), (0.3, 0.45)]]
    assert "rises" in looks_masked(rows)
    falling = [{"eps": e, "robust_acc": a, "n": 1000} for e, a in [(0.1, 0.5), (0.2, 0.3), (0.3, 0.301)]]
    assert looks_masked(falling) is None


# --- the command ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "run"
    train_tiny(out, epochs=1)
    return out


def test_cli_writes_audit_markdown_and_json_with_provenance(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    proc = odebench("audit", ckpt, "--n-samples", "20", "--apgd-steps", "5", "--square-queries", "20",
                    "--spsa-steps", "2", "--spsa-samples", "4", "--device", "cpu", "--out", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr
    assert "verdict:" in proc.stdout
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    audit_rows = [c for c in report["checks"] if not c["name"].startswith("model check:")]
    assert report["n"] == 20 and len(audit_rows) == len(checks.CHECKS)
    assert report["provenance"]["versions"]["torch"] == torch.__version__
    assert report["verdict_line"] in (tmp_path / "a" / "audit.md").read_text()


def test_cli_bad_checkpoint_path_exits_2_with_one_line(tmp_path):
    proc = odebench("audit", tmp_path / "missing")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "does not exist" in lines[0]


def test_finite_differences_run_in_full_fp32_and_restore_the_tf32_flags():
    import torch

    from robustbench_ode.diagnostics.gradients import full_fp32

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with full_fp32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
