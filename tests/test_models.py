"""The model zoo: every registered model classifies [0, 1] images; the Neural ODE counts and swaps solvers."""
from __future__ import annotations

import pytest
import torch

from robustbench_ode.data.base import DatasetInfo
from robustbench_ode.errors import UserError
from robustbench_ode.models import build_model, nfe_of, solver_surrogate
from robustbench_ode.models.odenet import ODEClassifier
from robustbench_ode.registry import MODELS


def info_for(channels: int, size: int, classes: int = 10) -> DatasetInfo:
    return DatasetInfo("toy", "toy", channels, size, classes, (0.5,) * channels, (0.25,) * channels)


# Tiny values for the options that set a model's size or cost; any model exposing them is shrunk.
TINY = {"width": 4, "channels": 4, "blocks_per_stage": 1, "conv_layers": 1, "t1": 0.5}


def tiny_options(name: str) -> dict:
    return {k: v for k, v in TINY.items() if k in MODELS.get(name).options}


def odenet(size: int = 8, **options) -> ODEClassifier:
    torch.manual_seed(0)
    return build_model("odenet", info_for(1, size), **{"channels": 4, "conv_layers": 1, **options})


@pytest.mark.parametrize("shape", [(1, 8), (1, 28), (3, 32)], ids=["1x8x8", "1x28x28", "3x32x32"])
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_gives_finite_logits_and_an_input_gradient(name, shape):
    channels, size = shape
    torch.manual_seed(0)
    model = build_model(name, info_for(channels, size, classes=7), **tiny_options(name))
    x = torch.rand(2, channels, size, size, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    logits[:, 0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_string_options_are_coerced():
    model = build_model("resnet20", info_for(1, 8), h="1/1000", width="4")
    assert {m.h for m in model.modules() if hasattr(m, "h")} == {1e-3}


def test_unknown_option_is_a_user_error():
    with pytest.raises(UserError, match="no option 'depth'"):
        build_model("resnet20", info_for(1, 8), depth=3)


def test_revnet_rejects_an_odd_width():
    with pytest.raises(UserError, match="even"):
        build_model("revnet", info_for(1, 8), width=5)


@pytest.mark.parametrize("size,side", [(8, 8), (28, 7), (32, 8)])
def test_odenet_downsamples_until_the_side_is_at_most_8(size, side):
    model = odenet(size)
    assert model.body.downsample(torch.rand(1, 1, size, size)).shape[-1] == side


def test_rk4_counts_four_evaluations_per_step_forward_and_backward():
    model = odenet(solver="rk4", t1=2.0, step_size=0.5)  # 4 steps x 4 stages
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    logits = model(x)
    assert nfe_of(model) == {"nfe_forward": 16, "nfe_backward": 0}
    logits.sum().backward()
    assert nfe_of(model) == {"nfe_forward": 16, "nfe_backward": 16}
    model(x)
    assert nfe_of(model)["nfe_backward"] == 0  # counters reset at every forward


def test_dopri5_takes_at_least_one_six_stage_step_and_more_when_tolerances_tighten():
    x = torch.rand(2, 1, 8, 8)
    loose, tight = odenet(rtol=1e-1, atol=1e-1), odenet(rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        loose(x), tight(x)
    assert nfe_of(loose)["nfe_forward"] >= 1 + 6  # f(y0), then 6 new stages per Dormand-Prince step
    assert nfe_of(tight)["nfe_forward"] > nfe_of(loose)["nfe_forward"]


def adjoint_gradient_error(step: float) -> tuple[float, dict]:
    """Max |adjoint - backprop| input gradient for rk4 at `step`, and the adjoint's NFE."""
    direct = odenet(solver="rk4", step_size=step)
    adjoint = direct.with_solver("rk4", step_size=step, adjoint=True)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grads = []
    for model in (direct, adjoint):
        x.grad = None
        model(x)[:, 3].sum().backward()
        grads.append(x.grad.clone())
    return (grads[0] - grads[1]).abs().max().item(), nfe_of(adjoint)


def test_adjoint_counts_its_backward_solve_and_converges_to_backprop_gradients():
    coarse_error, nfe = adjoint_gradient_error(0.25)
    assert nfe == {"nfe_forward": 16, "nfe_backward": 16}  # 4 rk4 steps back in time, 4 stages each
    fine_error, _ = adjoint_gradient_error(0.05)
    assert fine_error < coarse_error


def test_paper_presets_have_table_a1_values():
    for name, channels, layers, t1 in [("odenet_mnist", 128, 4, 100.0), ("odenet_cifar10", 256, 5, 500.0)]:
        options = {k: o.default for k, o in MODELS.get(name).options.items()}
        assert (options["channels"], options["conv_layers"], options["t1"], options["solver"]) == (
            channels, layers, t1, "dopri5"
        )
        model = build_model(name, info_for(1, 28), channels=8)  # still overridable
        assert len(model.body.block.func.convs) == layers and model.body.block.config.t1 == t1


def test_unknown_solver_is_a_user_error_listing_torchdiffeq_methods():
    with pytest.raises(UserError, match="dopri5.*rk4|rk4.*dopri5"):
        odenet(solver="rk5")


def test_the_solver_table_agrees_with_the_installed_torchdiffeq():
    """ode_block keeps its own table of torchdiffeq's methods (torchdiffeq's is private): an upgrade
    that adds, removes or re-kinds a method must show up here, not as a wrong `step_size` check."""
    from torchdiffeq._impl.odeint import SOLVERS
    from torchdiffeq._impl.solvers import FixedGridODESolver

    from robustbench_ode.models.ode_block import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS

    offered = {name: cls for name, cls in SOLVERS.items() if name != "scipy_solver"}
    assert sorted(FIXED_STEP_SOLVERS) == sorted(n for n, cls in offered.items() if issubclass(cls, FixedGridODESolver))
    assert sorted(ADAPTIVE_SOLVERS) == sorted(n for n, cls in offered.items() if not issubclass(cls, FixedGridODESolver))


@pytest.mark.parametrize("options", [{"step_size": 0.1}, {"solver": "rk4", "step_size": -1.0}, {"t1": 0.0}])
def test_bad_solver_settings_are_user_errors(options):
    with pytest.raises(UserError):
        odenet(**options)


def test_with_solver_shares_parameters_and_agrees_with_dopri5_at_a_small_step():
    model = odenet(rtol=1e-6, atol=1e-6).eval()
    surrogate = model.with_solver("rk4", step_size=0.05)
    assert surrogate is not model and surrogate.body.block.config.solver == "rk4"
    assert model.body.block.config.solver == "dopri5"
    assert [p.data_ptr() for p in surrogate.parameters()] == [p.data_ptr() for p in model.parameters()]
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        before = surrogate(x)
        torch.testing.assert_close(before, model(x), rtol=1e-4, atol=1e-4)
        model.body.head[-1].bias.add_(1.0)  # training the model trains its surrogate
        torch.testing.assert_close(surrogate(x), before + 1.0)


def test_solver_surrogate_needs_an_ode_model():
    assert solver_surrogate(odenet(), solver="euler").body.block.config.solver == "euler"
    with pytest.raises(UserError, match="ODE"):
        solver_surrogate(build_model("resnet_small", info_for(1, 8), width=4), solver="rk4")


def test_max_nfe_caps_the_forward_solve():
    x = torch.rand(1, 1, 8, 8)
    odenet(solver="rk4", step_size=0.25, max_nfe=16)(x)  # exactly at the cap is allowed
    with pytest.raises(RuntimeError, match="max_nfe=15"):
        odenet(solver="rk4", step_size=0.25, max_nfe=15)(x)
    with pytest.raises(RuntimeError, match="max_nfe"):
        odenet(rtol=1e-8, atol=1e-8, max_nfe=10)(x)



@pytest.mark.parametrize("name", ["odenet", "odenet_mnist", "odenet_cifar10"])
def test_zero_init_starts_the_ode_flow_as_the_identity(name):
    torch.manual_seed(0)
    model = build_model(name, info_for(1, 8), channels=4, conv_layers=1, t1=100.0, zero_init=True).eval()
    y0 = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.body.block(y0), y0, atol=1e-5)  # f = 0: only rounding moves y
    default = build_model(name, info_for(1, 8), channels=4, conv_layers=1, t1=100.0).eval()
    with torch.no_grad():
        assert not torch.allclose(default.body.block(y0), y0)


def test_zero_init_changes_only_the_scale_of_fs_last_norm():
    torch.manual_seed(0)
    plain = build_model("odenet", info_for(1, 8), channels=4, conv_layers=1).state_dict()
    torch.manual_seed(0)
    zero = build_model("odenet", info_for(1, 8), channels=4, conv_layers=1, zero_init=True).state_dict()
    changed = [k for k in plain if not torch.equal(plain[k], zero[k])]
    assert changed == ["body.block.func.norms.1.weight"] and not zero[changed[0]].any()
