"""GAINS' released MNIST Neural ODE (models/gains2023.py): their checkpoints' tensor names and shapes
load strictly, their controlled adaptive dopri5 follows its step-size rule sample by sample, and the
forward is the one their ODENet_mini_MNIST describes, written out by hand here."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from robustbench_ode.data.base import DatasetInfo
from robustbench_ode.errors import UserError
from robustbench_ode.models import ODEBlock, build_model, nfe_of, solver_surrogate
from robustbench_ode.models.base import batch_dependent
from robustbench_ode.models.gains2023 import COEFFS, ERROR_WEIGHTS, NODES, GainsODEBlock
from robustbench_ode.user_model import ModelSource

MNIST = DatasetInfo("mnist", "MNIST", 1, 28, 10, (0.1307,), (0.3081,))

# The `state_dict` of their checkpoints (eth-sri/GAINS, models/pre-trained/MNIST/*dopri5_0.005_2a*.pth.tar).
RELEASED = {
    "net.1.weight": (32, 1, 5, 5), "net.1.bias": (32,), "net.3.weight": (32, 32, 5, 5), "net.3.bias": (32,),
    "net.5.running_mean_step": (1,),
    "net.5.odefunc.conv1._layer.weight": (32, 33, 3, 3), "net.5.odefunc.conv1._layer.bias": (32,),
    "net.5.odefunc.conv2._layer.weight": (32, 33, 3, 3), "net.5.odefunc.conv2._layer.bias": (32,),
    "net.8.weight": (10, 32), "net.8.bias": (10,),
}


def released_state(seed: int = 0, field_scale: float = 0.1, first_step: float = 0.2) -> dict[str, Tensor]:
    """Random tensors with exactly the released names and shapes."""
    g = torch.Generator().manual_seed(seed)
    state = {k: 0.1 * torch.randn(shape, generator=g) for k, shape in RELEASED.items()}
    for k in state:
        if ".odefunc." in k:
            state[k] = state[k] * (field_scale / 0.1)
    state["net.5.running_mean_step"] = torch.tensor([first_step])
    return state


def gains(state: dict[str, Tensor] | None = None) -> nn.Module:
    model = build_model("gains2023_ode", MNIST).eval()
    model.body.load_state_dict(released_state() if state is None else state)  # strict
    return model


def images(n: int, seed: int = 1) -> Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def block_of(model: nn.Module) -> GainsODEBlock:
    return model.body.net[5]


# --- their tensors ----------------------------------------------------------------------------------------------


def test_the_state_dict_has_exactly_the_released_names_and_shapes() -> None:
    own = {k: tuple(v.shape) for k, v in build_model("gains2023_ode", MNIST).body.state_dict().items()}
    assert own == RELEASED
    assert list(own) == list(RELEASED)  # their order too


def test_a_released_layout_state_dict_loads_strictly_and_round_trips() -> None:
    state = released_state(seed=3, first_step=0.0395)
    model = gains(state)
    assert all(torch.equal(model.body.state_dict()[k], v) for k, v in state.items())
    assert block_of(model).running_mean_step.item() == pytest.approx(0.0395)


def test_a_released_layout_file_loads_through_model_and_weights(tmp_path: Path) -> None:
    path = tmp_path / "gains.safetensors"
    save_file(released_state(), str(path))
    net, _, _ = ModelSource(registered="gains2023_ode", weights=path).build(MNIST)
    assert torch.equal(block_of(net).func.conv1.conv.weight, released_state()["net.5.odefunc.conv1._layer.weight"])


def test_a_file_without_the_first_step_is_refused_naming_it(tmp_path: Path) -> None:
    state = released_state()
    del state["net.5.running_mean_step"]  # their Euler checkpoints: another solver
    path = tmp_path / "euler.safetensors"
    save_file(state, str(path))
    with pytest.raises(UserError, match="missing: net.5.running_mean_step"):
        ModelSource(registered="gains2023_ode", weights=path).build(MNIST)


def test_a_fresh_model_starts_from_their_evaluation_fallback_step_and_bad_options_are_refused() -> None:
    assert block_of(build_model("gains2023_ode", MNIST)).running_mean_step.tolist() == pytest.approx([0.2])
    with pytest.raises(UserError, match="step_factor"):
        build_model("gains2023_ode", MNIST, step_factor="1")
    with pytest.raises(UserError, match="atol"):
        build_model("gains2023_ode", MNIST, atol="0")


def test_the_tableau_is_torchdiffeqs_dopri5() -> None:
    from torchdiffeq._impl.dopri5 import _DORMAND_PRINCE_SHAMPINE_TABLEAU as tab

    assert torch.allclose(torch.tensor(NODES, dtype=torch.float64), tab.alpha, rtol=0, atol=1e-15)
    for mine, theirs in zip(COEFFS, tab.beta):
        assert torch.allclose(torch.tensor(mine, dtype=torch.float64), theirs, rtol=0, atol=1e-13)
    assert torch.allclose(torch.tensor(ERROR_WEIGHTS, dtype=torch.float64), tab.c_error, rtol=0, atol=1e-15)


# --- the step-size rule on y' = λ(t) y ---------------------------------------------------------------------------


class Linear(nn.Module):
    """y' = λ(t) y with λ = lam before `switch` and lam2 from then on (one time per sample)."""

    def __init__(self, lam: float, switch: float = math.inf, lam2: float = 0.0) -> None:
        super().__init__()
        self.lam, self.switch, self.lam2 = lam, switch, lam2

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        t = t.reshape(-1, *([1] * (y.dim() - 1)))
        return torch.where(t < self.switch, torch.full_like(t, self.lam), torch.full_like(t, self.lam2)) * y


def solve(func: nn.Module, y0: float | list[float], first: float = 0.2) -> tuple[GainsODEBlock, Tensor]:
    block = GainsODEBlock(func, atol=0.005, step_factor=2.0)
    block.running_mean_step.fill_(first)
    y = torch.tensor(y0 if isinstance(y0, list) else [y0], dtype=torch.float32).reshape(-1, 1)
    return block, block(y)


def f32(x: float) -> float:
    return torch.tensor(x, dtype=torch.float32).item()


LAST = f32(1.0 - f32(0.6))  # from t = 0.2 + 0.4 (float32) the doubled step 0.8 is clipped to 1 - t


def check_rule(steps: list[tuple[float, float, float, bool]]) -> None:
    """Every transition follows the rule as the brief states it (float32 time arithmetic)."""
    clips, fallback = 0, False
    for (t, dt, err, accepted), (t_next, dt_next, _, _) in zip(steps, steps[1:]):
        assert accepted == (fallback or err <= 1)
        t_after = f32(t + dt) if accepted else t
        assert t_next == t_after
        if fallback:
            expected = min(dt, f32(1.0 - t_after))
        else:
            expected = dt * 2 if err <= 2 ** -5 else dt if err <= 1 else dt / 2
            if err > 1 and clips > 0:
                clips += 1
            if err > 1 and ((f32(expected) < f32(0.02) and clips == 0) or clips > 2):
                expected, fallback = dt, True
            elif f32(t_after + expected) > 1.0:
                expected = f32(1.0 - t_after)
                clips = max(clips, 1)
        assert dt_next == expected, (t, dt, err, accepted)


def test_a_flat_field_accepts_doubles_and_clips_the_last_step_to_end_exactly_at_1() -> None:
    block, y1 = solve(Linear(0.0), 3.0)
    steps = block.steps[0]
    assert [(t, dt, a) for t, dt, _, a in steps] == [(0.0, f32(0.2), True), (f32(0.2), f32(0.4), True),
                                                    (f32(0.6), LAST, True)]
    assert f32(steps[-1][0] + steps[-1][1]) == 1.0
    assert block.nfe_per_sample.tolist() == [1 + 6 * 3] and block.nfe_forward == 19
    assert y1.item() == 3.0


def test_large_errors_halve_the_step_down_to_the_fallback_which_keeps_the_rejected_step() -> None:
    block, y1 = solve(Linear(-1.0), 1e12)
    steps = block.steps[0]
    assert [(dt, a) for _, dt, _, a in steps[:5]] == [(f32(0.2), False), (f32(0.1), False), (f32(0.05), False),
                                                     (f32(0.025), False), (f32(0.025), True)]
    assert all(a and e == 0.0 for _, _, e, a in steps[4:])  # after the fallback: no error check
    assert f32(steps[-1][0] + steps[-1][1]) == 1.0 and all(t < 1.0 for t, *_ in steps)
    assert block.nfe_per_sample.item() == 1 + 6 * len(steps)
    assert y1.item() == pytest.approx(1e12 * math.exp(-1), rel=1e-4)
    check_rule(steps)


def test_moderate_errors_keep_or_halve_the_step_and_the_solution_is_accurate() -> None:
    block, y1 = solve(Linear(-3.0), 3e3)
    steps = block.steps[0]
    assert any(not a for *_, a in steps)  # some rejects ...
    assert any(a and 2 ** -5 < e <= 1 for _, _, e, a in steps)  # ... and accepted steps that keep dt
    assert y1.item() == pytest.approx(3e3 * math.exp(-3), rel=1e-3)
    check_rule(steps)


def test_two_rejects_after_the_first_clip_switch_to_the_fallback() -> None:
    # λ = 0 up to t = 0.7, then stiff: the clipped step [0.6, 1] and its half are rejected
    block, _ = solve(Linear(0.0, switch=0.7, lam2=-50.0), 1e6)
    steps = block.steps[0]
    half = LAST / 2
    t_last = f32(f32(0.6) + half)
    assert [(t, dt, a) for t, dt, _, a in steps] == [
        (0.0, f32(0.2), True), (f32(0.2), f32(0.4), True), (f32(0.6), LAST, False), (f32(0.6), half, False),
        (f32(0.6), half, True), (t_last, min(half, f32(1.0 - t_last)), True)]
    assert [e for *_, e, _ in steps[4:]] == [0.0, 0.0]
    assert block.nfe_per_sample.item() == 1 + 6 * 6
    check_rule(steps)


def test_samples_of_one_batch_take_their_own_steps() -> None:
    cases = [3.0, 1e12, 3e3]
    block, ys = solve(Linear(-1.0), cases)
    for i, y0 in enumerate(cases):
        alone, y_alone = solve(Linear(-1.0), y0)
        assert block.steps[i] == alone.steps[0]
        assert block.nfe_per_sample[i] == alone.nfe_per_sample[0]
        assert ys[i].item() == y_alone.item()
    assert block.nfe_forward == int(block.nfe_per_sample.max())


def test_max_nfe_caps_each_samples_evaluations() -> None:
    block = GainsODEBlock(Linear(-1.0), max_nfe=20)
    block.running_mean_step.fill_(0.2)
    with pytest.raises(RuntimeError, match="max_nfe=20"):
        block(torch.full((1, 1), 1e12))


# --- the network ---------------------------------------------------------------------------------------------------


def test_an_images_logits_and_steps_do_not_depend_on_its_batch() -> None:
    model = gains(released_state(seed=5, field_scale=0.1, first_step=0.1))
    x = images(4)
    x[3] = x[3] * 0  # a blank image among noise: different step sequences in one batch
    with torch.no_grad():
        together = model(x)
        steps, nfes = block_of(model).steps, block_of(model).nfe_per_sample.tolist()
        for i in range(4):
            alone = model(x[i:i + 1])
            assert [(t, dt, a) for t, dt, _, a in block_of(model).steps[0]] == [(t, dt, a) for t, dt, _, a in steps[i]]
            assert block_of(model).nfe_per_sample.tolist() == [nfes[i]]
            # the same operations; only a CPU conv's rounding for one image vs several differs (~1e-6)
            torch.testing.assert_close(alone[0], together[i], rtol=1e-5, atol=1e-5)
    assert len(set(nfes)) > 1
    assert not batch_dependent(model)


def dopri5_step(f, t0: Tensor, dt: Tensor, y0: Tensor, f0: Tensor) -> tuple[Tensor, Tensor]:
    """One Dormand-Prince 5(4) step, written out (float32 times; stages at t1 are taken just below t1)."""
    t1 = t0 + dt
    below = torch.nextafter(t1, t1 - 1)
    k1 = f0
    k2 = f(t0 + f32(1 / 5) * dt, y0 + dt * (f32(1 / 5) * k1))
    k3 = f(t0 + f32(3 / 10) * dt, y0 + dt * (f32(3 / 40) * k1 + f32(9 / 40) * k2))
    k4 = f(t0 + f32(4 / 5) * dt, y0 + dt * (f32(44 / 45) * k1 - f32(56 / 15) * k2 + f32(32 / 9) * k3))
    k5 = f(t0 + f32(8 / 9) * dt, y0 + dt * (f32(19372 / 6561) * k1 - f32(25360 / 2187) * k2
                                            + f32(64448 / 6561) * k3 - f32(212 / 729) * k4))
    k6 = f(below, y0 + dt * (f32(9017 / 3168) * k1 - f32(355 / 33) * k2 + f32(46732 / 5247) * k3
                             + f32(49 / 176) * k4 - f32(5103 / 18656) * k5))
    y1 = y0 + dt * (f32(35 / 384) * k1 + f32(500 / 1113) * k3 + f32(125 / 192) * k4 - f32(2187 / 6784) * k5
                    + f32(11 / 84) * k6)
    return y1, f(below, y1)


def reference_logits(state: dict[str, Tensor], x: Tensor, steps: list[float]) -> Tensor:
    """Their ODENet_mini_MNIST with plain functional ops, integrated with the given step sizes."""
    z = (x - 0.1307) / 0.3081
    z = F.relu(F.conv2d(z, state["net.1.weight"], state["net.1.bias"], stride=2))
    z = F.relu(F.conv2d(z, state["net.3.weight"], state["net.3.bias"], stride=2))

    def concat_conv(t: Tensor, y: Tensor, i: int) -> Tensor:
        tt = torch.ones_like(y[:, :1]) * t
        w, b = state[f"net.5.odefunc.conv{i}._layer.weight"], state[f"net.5.odefunc.conv{i}._layer.bias"]
        return F.conv2d(torch.cat([tt, y], 1), w, b, padding=1)

    def f(t: Tensor, y: Tensor) -> Tensor:
        return F.relu(concat_conv(t, F.relu(concat_conv(t, y, 1)), 2))

    t = torch.tensor(0.0)
    fz = f(t, z)
    for h in steps:
        dt = torch.tensor(h)
        z, fz = dopri5_step(f, t, dt, z, fz)
        t = t + dt
    assert t.item() == 1.0
    return F.linear(z.mean(dim=(2, 3)), state["net.8.weight"], state["net.8.bias"])


def test_the_forward_is_their_network_with_the_known_step_sequence() -> None:
    state = released_state(seed=7, field_scale=0.02, first_step=0.2)  # a gentle field: accept and double
    model, x = gains(state), images(2, seed=2)
    with torch.no_grad():
        logits = model(x)
    for steps in block_of(model).steps:
        assert [(t, dt, a) for t, dt, _, a in steps] == [(0.0, f32(0.2), True), (f32(0.2), f32(0.4), True),
                                                        (f32(0.6), LAST, True)]
    assert block_of(model).nfe_per_sample.tolist() == [19, 19]
    expected = reference_logits(state, x, [f32(0.2), f32(0.4), LAST])
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_gradients_flow_through_the_solve() -> None:
    model = gains(released_state(seed=5, field_scale=0.1, first_step=0.1))
    x = images(3).requires_grad_(True)
    F.cross_entropy(model(x), torch.tensor([1, 2, 3])).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum(dim=(1, 2, 3)).gt(0).all()
    assert block_of(model).func.conv1.conv.weight.grad.abs().sum() > 0
    nfe = nfe_of(model)
    assert nfe["nfe_forward"] == int(block_of(model).nfe_per_sample.max()) and nfe["nfe_backward"] > 0


def test_a_solver_surrogate_integrates_the_same_weights_with_torchdiffeq() -> None:
    model = gains(released_state(seed=7, field_scale=0.02))
    surrogate = solver_surrogate(model, solver="rk4", step_size=0.05)
    blocks = [m for m in surrogate.modules() if isinstance(m, ODEBlock)]
    assert len(blocks) == 1 and not isinstance(blocks[0], GainsODEBlock)
    assert blocks[0].config.solver == "rk4" and blocks[0].config.step_size == 0.05
    assert blocks[0].func is block_of(model).func  # the same parameters
    x = images(2, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(surrogate(x), model(x), rtol=0, atol=1e-4)
    assert blocks[0].nfe_forward == 4 * 20
    assert isinstance(block_of(model), GainsODEBlock)  # the original is untouched


@pytest.mark.parametrize("shape", [(1, 8), (3, 32)], ids=["1x8x8", "3x32x32"])
def test_other_image_shapes_build_and_differentiate(shape: tuple[int, int]) -> None:
    channels, size = shape
    info = DatasetInfo("toy", "toy", channels, size, 7, (0.5,) * channels, (0.25,) * channels)
    torch.manual_seed(0)
    model = build_model("gains2023_ode", info)
    x = torch.rand(2, channels, size, size, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    logits[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    first, rest = model.body.split_first()
    with torch.no_grad():
        z = (x - model.mean) / model.std
        torch.testing.assert_close(rest(first(z)), model(x))
