"""The ODE backend: torchode solves every image with its own step size, so no verdict depends on the batch."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_ode.errors import UserError
from robustbench_ode.models.base import ImageClassifier, batch_dependent, use_ode_backend
from robustbench_ode.models.ode_block import SolverConfig
from robustbench_ode.models.odenet import ODEClassifier, parse_solver_spec
from robustbench_ode.registry import MODELS

BATCH_TOLERANCE = 1e-4  # largest logit change allowed when only an image's batch-mates change
LOOSE = {"rtol": 0.1, "atol": 0.1}  # loose tolerances: torchdiffeq's shared step size shows most here


def tiny_odenet(info, seed: int = 0, **options) -> ODEClassifier:
    """A cheap Neural ODE for 8x8 digits: 8 channels, f of one conv, t1 = 1."""
    torch.manual_seed(seed)
    return MODELS.get("odenet").build(info, **{"channels": 8, "conv_layers": 1, "t1": 1.0, **options}).eval()


@pytest.fixture(scope="module")
def model(digits) -> ODEClassifier:
    return tiny_odenet(digits.info, **LOOSE)


def logits_in_three_batches(model: nn.Module, digits, n_images: int = 3) -> list[torch.Tensor]:
    """Logits of the first test images alone, among the first 200 test images, and among 50 training images."""
    images = digits.test_x[:n_images]
    with torch.no_grad():
        alone = torch.cat([model(image[None]) for image in images])
        in_200 = model(digits.test_x[:200])[:n_images]
        in_other = model(torch.cat([images, digits.train_x[:50]]))[:n_images]
    return [alone, in_200, in_other]


def largest_change(logits: list[torch.Tensor]) -> float:
    """Largest |Δlogit| between the first and any other of `logits`."""
    return max((other - logits[0]).abs().max().item() for other in logits[1:])


def test_torchode_logits_do_not_depend_on_batch_mates(model, digits):
    logits = logits_in_three_batches(model.with_solver("dopri5", backend="torchode"), digits)
    assert largest_change(logits) <= BATCH_TOLERANCE
    assert all(torch.equal(other.argmax(1), logits[0].argmax(1)) for other in logits[1:])


def test_torchdiffeq_dopri5_logits_do_depend_on_batch_mates(model, digits):
    """Why the backend exists: the same check fails for torchdiffeq's batch-wide step size (measured ~2e-3)."""
    logits = logits_in_three_batches(model.with_solver("dopri5", backend="torchdiffeq"), digits)
    assert largest_change(logits) > BATCH_TOLERANCE


def test_each_sample_needs_its_own_nfe_whatever_its_batch(model, digits):
    twin = model.with_solver("dopri5", backend="torchode")
    block = twin.body.block
    with torch.no_grad():
        twin(digits.test_x[:200])
        in_batch = block.nfe_per_sample.clone()
        assert block.nfe_forward == int(in_batch.max())  # f runs on the batch until its slowest sample is done
        alone = []
        for image in digits.test_x[:5]:
            twin(image[None])
            assert block.nfe_per_sample.tolist() == [block.nfe_forward]
            alone.append(block.nfe_forward)
    assert in_batch[:5].tolist() == alone


@pytest.mark.parametrize("seed", [0, 1])
def test_torchode_and_torchdiffeq_agree_on_a_single_image_within_the_solver_tolerance(digits, seed):
    """Same vector field, another dopri5 implementation (measured: max |Δlogit| <= 1.6e-4 at tol 1e-3)."""
    model = tiny_odenet(digits.info, seed)
    tol = model.body.block.config.rtol
    torchode = model.with_solver("dopri5", backend="torchode")
    with torch.no_grad():
        for image in digits.test_x[:5]:
            assert (torchode(image[None]) - model(image[None])).abs().max() < tol


def test_tsit5_is_offered_through_torchode_only(digits):
    model = tiny_odenet(digits.info)
    tsit5 = model.with_solver("tsit5", backend="torchode")
    with torch.no_grad():
        assert (tsit5(digits.test_x[:4]) - model(digits.test_x[:4])).abs().max() < model.body.block.config.rtol
    with pytest.raises(UserError, match="only in torchode"):
        model.with_solver("tsit5")


@pytest.mark.parametrize("adjoint", [False, True], ids=["backprop", "adjoint"])
def test_input_and_parameter_gradients_through_torchode_exist_and_are_finite(digits, adjoint):
    model = tiny_odenet(digits.info, backend="torchode", adjoint=adjoint)
    x = digits.test_x[:4].clone().requires_grad_()
    nn.functional.cross_entropy(model(x), digits.test_y[:4]).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.body.block.nfe_backward > 0


def test_torchode_adjoint_input_gradient_matches_backprop_through_the_solver(digits):
    """BacksolveAdjoint solves the adjoint ODE; at a tight tolerance it meets the discrete gradient (measured 1.8%)."""
    model = tiny_odenet(digits.info, channels=4, backend="torchode", rtol=1e-6, atol=1e-6).double()
    grads = []
    for adjoint in (False, True):
        x = digits.test_x[:4].double().requires_grad_()
        nn.functional.cross_entropy(model.with_solver("dopri5", adjoint=adjoint)(x), digits.test_y[:4]).backward()
        grads.append(x.grad)
    assert (grads[0] - grads[1]).norm() < 0.05 * grads[0].norm()


def test_a_training_step_through_torchode_lowers_the_loss(digits):
    model = tiny_odenet(digits.info, backend="torchode").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = digits.train_x[:64], digits.train_y[:64]
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_use_ode_backend_switches_a_model_trained_with_torchdiffeq(digits):
    trained = tiny_odenet(digits.info)
    opt = torch.optim.Adam(trained.parameters(), lr=1e-2)
    for _ in range(2):  # a few torchdiffeq training steps make it checkpoint-like
        opt.zero_grad()
        nn.functional.cross_entropy(trained(digits.train_x[:32]), digits.train_y[:32]).backward()
        opt.step()
    trained.eval()
    x = digits.test_x[:8]
    with torch.no_grad():
        before = trained(x)
    state = trained.state_dict()
    rebuilt = tiny_odenet(digits.info, seed=1, backend="torchode")
    rebuilt.load_state_dict(state)  # strict: the backend changes no parameter
    assert batch_dependent(trained) and not batch_dependent(rebuilt)

    assert use_ode_backend(trained, "torchode") == 1
    assert not batch_dependent(trained) and trained.body.block.config.backend == "torchode"
    with torch.no_grad():
        switched = trained(x)
        assert torch.equal(switched, rebuilt(x))
        assert (switched - before).abs().max() < trained.body.block.config.rtol
        assert use_ode_backend(trained, "torchdiffeq") == 1
        assert torch.equal(trained(x), before)


def test_use_ode_backend_leaves_models_without_an_adaptive_ode_block_alone(digits):
    mlp = ImageClassifier(digits.info, nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    assert use_ode_backend(mlp, "torchode") == 0 and not batch_dependent(mlp)
    rk4 = tiny_odenet(digits.info, solver="rk4", step_size=0.25)
    assert use_ode_backend(rk4, "torchode") == 0 and not batch_dependent(rk4)
    assert rk4.body.block.config.backend == "torchdiffeq"


def test_a_fixed_step_solver_ignores_the_backend(digits):
    rk4 = tiny_odenet(digits.info, solver="rk4", step_size=0.25)
    rk4_torchode = rk4.with_solver("rk4", step_size=0.25, backend="torchode")
    x = digits.test_x[:6]
    with torch.no_grad():
        assert torch.equal(rk4(x), rk4_torchode(x))
    assert rk4.body.block.nfe_forward == rk4_torchode.body.block.nfe_forward == 4 * 4  # 4 steps of 4 stages
    assert not batch_dependent(rk4_torchode)


def test_with_solver_keeps_the_backend_unless_told(digits):
    model = tiny_odenet(digits.info, backend="torchode")
    assert model.with_solver("dopri5").body.block.config.backend == "torchode"
    assert model.with_solver("dopri5", backend="torchdiffeq").body.block.config.backend == "torchdiffeq"
    assert parse_solver_spec("dopri5:backend=torchode") == {"solver": "dopri5", "backend": "torchode"}


def test_bad_backends_are_user_errors(digits):
    with pytest.raises(UserError, match="unknown ODE backend 'jax'"):
        SolverConfig(backend="jax")
    with pytest.raises(UserError, match="unknown ODE backend"):
        tiny_odenet(digits.info, backend="torchode2")
    with pytest.raises(UserError, match="unknown ODE backend"):
        use_ode_backend(tiny_odenet(digits.info), "diffrax")
    with pytest.raises(UserError, match="dopri5, tsit5"):  # an adaptive solver torchode lacks
        SolverConfig(solver="bosh3", backend="torchode")
    bosh3 = tiny_odenet(digits.info, solver="bosh3")
    with pytest.raises(UserError, match="no adaptive solver 'bosh3'"):
        use_ode_backend(bosh3, "torchode")
    assert bosh3.body.block.config.backend == "torchdiffeq"


def test_one_table_holds_the_backends_a_block_accepts_and_every_front_end_offers():
    import inspect

    import typer.main

    from robustbench_ode import api
    from robustbench_ode.cli import app
    from robustbench_ode.ode_backends import AS_TRAINED, DEFAULT_ODE_BACKEND, ODE_BACKENDS, SOLVER_BACKENDS

    assert set(SOLVER_BACKENDS) | {AS_TRAINED} == set(ODE_BACKENDS) and DEFAULT_ODE_BACKEND in SOLVER_BACKENDS
    assert all(SolverConfig(backend=name).backend == name for name in SOLVER_BACKENDS)
    assert {inspect.signature(f).parameters["ode_backend"].default for f in (api.evaluate, api.audit)} == {
        DEFAULT_ODE_BACKEND}
    cli = typer.main.get_command(app)
    options = [p for name in ("attack", "audit", "converge") for p in cli.commands[name].params if p.name == "ode_backend"]
    assert len(options) == 3 and all(p.default == DEFAULT_ODE_BACKEND for p in options)
    assert all(all(name in p.help for name in ODE_BACKENDS) for p in options)


@pytest.mark.parametrize("backend", ["torchdiffeq", "torchode"])
def test_max_nfe_allows_exactly_the_evaluations_a_sample_needs(digits, backend):
    model = tiny_odenet(digits.info, backend=backend)
    x = digits.test_x[:1]
    with torch.no_grad():
        model(x)
        needed = model.body.block.nfe_forward
        assert torch.equal(model.with_solver("dopri5", max_nfe=needed)(x), model(x))
        with pytest.raises(RuntimeError, match=f"max_nfe={needed - 1}"):
            model.with_solver("dopri5", max_nfe=needed - 1)(x)
