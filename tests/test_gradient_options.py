"""Gradient options of every gradient attack: a different solver to differentiate through
(`--grad-solver`, BPDA-style) and EOT (`--eot`) for randomised models."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_ode.attacks.gradient_from import GradientFrom
from robustbench_ode.errors import UserError
from robustbench_ode.evaluation.request import AttackSpec
from robustbench_ode.registry import ATTACKS

from .helpers import odebench, train_tiny
from .test_cli import one_line_error


class Quantised(nn.Module):
    """`model` behind an input quantisation: right decisions, zero input gradient (masked)."""

    def __init__(self, model: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)


class Noisy(nn.Module):
    """A randomised model: Gaussian noise on the input at every call, also in eval mode."""

    def __init__(self, model: nn.Module, sigma: float = 0.3) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x):
        return self.model(x + self.sigma * torch.randn_like(x))


def test_gradient_from_has_the_models_value_and_the_surrogates_gradient():
    torch.manual_seed(0)
    model, surrogate = nn.Linear(5, 3), nn.Linear(5, 3)
    x = torch.randn(4, 5, requires_grad=True)
    out = GradientFrom(model, surrogate)(x)
    assert torch.allclose(out, model(x))
    (grad,) = torch.autograd.grad(out[:, 1].sum(), x)
    assert torch.allclose(grad, surrogate.weight[1].expand(4, 5))
    with torch.no_grad():  # forward-only calls cost no surrogate pass
        assert torch.equal(GradientFrom(model, surrogate)(x), model(x))


def test_pgd_through_a_differentiable_surrogate_breaks_a_gradient_masked_model(trained, digits):
    x, y = digits.test_x[:200], digits.test_y[:200]
    masked = Quantised(trained).eval()
    pgd = ATTACKS.get("pgd").build(steps=20, step_size=0.05)
    clean = (masked(x).argmax(1) == y).float().mean()
    own = (masked(pgd(masked, x, y, 0.3)).argmax(1) == y).float().mean()
    via = (masked(pgd(GradientFrom(masked, trained), x, y, 0.3)).argmax(1) == y).float().mean()
    assert own > 0.5 * clean  # zero gradients: PGD only has its random start
    assert via < 0.1 < own  # the same model falls once gradients come from the surrogate


def test_eot_averages_gradients_over_random_draws(trained, digits):
    x, y = digits.test_x[:64], digits.test_y[:64]
    noisy = Noisy(trained).eval()
    loss = nn.functional.cross_entropy

    def agreement(eot: int) -> float:
        attack = ATTACKS.get("fgsm").build().with_options(eot=eot)
        torch.manual_seed(1)
        g1 = attack.loss_grad(noisy, x, y, lambda o, t: loss(o, t, reduction="none"))[1].flatten(1)
        g2 = attack.loss_grad(noisy, x, y, lambda o, t: loss(o, t, reduction="none"))[1].flatten(1)
        return nn.functional.cosine_similarity(g1, g2).mean().item()

    single, averaged = agreement(1), agreement(64)
    assert 1 - averaged < (1 - single) / 4, (single, averaged)  # two EOT estimates agree far better
    attack = ATTACKS.get("fgsm").build().with_options(eot=8)
    attack.loss_grad(noisy, x, y, lambda o, t: loss(o, t, reduction="none"))
    assert attack.grad_calls == 8 * len(x)


def test_eot_of_a_deterministic_model_is_its_plain_gradient(trained, digits):
    x, y = digits.test_x[:32], digits.test_y[:32]
    plain = AttackSpec.parse("pgd", {"random_start": "false", "steps": "5"}).build()
    eot = AttackSpec.parse("pgd", {"random_start": "false", "steps": "5"}, eot=4).build()
    assert torch.allclose(plain(trained, x, y, 0.2), eot(trained, x, y, 0.2))
    assert eot.grad_calls == 4 * plain.grad_calls


@pytest.mark.parametrize("kwargs, message", [
    ({"eot": 0}, "eot must be >= 1"),
    ({"grad_solver": "rk5"}, "unknown solver 'rk5'"),
    ({"grad_solver": "rk4:steps=3"}, "has no option 'steps'"),
])
def test_bad_gradient_options_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        AttackSpec.parse("pgd", {}, **kwargs)


@pytest.mark.parametrize("name", ["square", "spsa", "boundary"])
def test_gradient_options_on_a_gradient_free_attack_are_user_errors(name):
    with pytest.raises(UserError, match="uses no gradients"):
        AttackSpec.parse(name, {}, eot=2)


@pytest.fixture(scope="module")
def ode_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ode") / "odenet"
    train_tiny(out, model="odenet", model_options={"channels": "4", "conv_layers": "1", "t1": "1.0"},
               epochs=1, lr=0.01)
    return out


def test_attack_cli_differentiates_an_ode_through_the_chosen_solver(ode_ckpt, tmp_path):
    out = tmp_path / "o"
    proc = odebench("attack", "-c", ode_ckpt, "-a", "pgd", "--attack-arg", "steps=3", "--eps", "0.1",
                    "--n-samples", "20", "--grad-solver", "rk4:step_size=0.25:adjoint=false", "--device", "cpu",
                    "--out", out)
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(out / "results.csv")
    args = json.loads(rows.loc[rows["eps"] > 0, "attack_args"].iloc[0])
    assert args["grad_solver"] == "rk4:step_size=0.25:adjoint=false"
    assert "grad_solver=rk4:step_size=0.25:adjoint=false" in (out / "results.md").read_text()
    # the plain attack is a different cell of the same table, not a reuse of the surrogate's
    assert odebench("attack", "-c", ode_ckpt, "-a", "pgd", "--attack-arg", "steps=3", "--eps", "0.1",
                    "--n-samples", "20", "--device", "cpu", "--out", out).returncode == 0
    assert pd.read_csv(out / "results.csv")["attack_args"].nunique() == 2


def test_grad_solver_on_a_model_without_a_solver_is_one_line(tmp_path):
    ckpt = tmp_path / "resnet"
    train_tiny(ckpt, epochs=1)
    line = one_line_error(odebench("attack", "-c", ckpt, "--eps", "0.1", "--n-samples", "10",
                                   "--grad-solver", "rk4", "--out", tmp_path / "o"))
    assert "no ODE solver" in line


def test_grad_solver_differentiates_the_same_weights_through_the_named_solver(digits):
    from robustbench_ode.models import build_model

    torch.manual_seed(0)
    model = build_model("odenet", digits.info, channels=4, conv_layers=1, t1=1.0).eval()
    rk4 = model.with_solver(solver="rk4", step_size=0.25, adjoint=False)
    crafting = AttackSpec.parse("pgd", {}, grad_solver="rk4:step_size=0.25:adjoint=false").crafting_model(model)
    x = digits.test_x[:8].clone().requires_grad_(True)
    out = crafting(x)
    assert torch.allclose(out, model(x))
    (got,) = torch.autograd.grad(out[:, 0].sum(), x)
    (want,) = torch.autograd.grad(rk4(x)[:, 0].sum(), x)
    assert torch.allclose(got, want)
