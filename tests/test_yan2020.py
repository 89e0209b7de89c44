"""Yan et al.'s released MNIST networks (models/yan2020.py): their exact tensor names and shapes load
strictly, and the forward is the one their `mnist/networks.py` describes, written out by hand here."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from robustbench_ode.checkpoint import load_checkpoint, save_checkpoint
from robustbench_ode.data.base import DatasetInfo
from robustbench_ode.errors import UserError
from robustbench_ode.models import build_model, nfe_of, solver_surrogate
from robustbench_ode.user_model import ModelSource

MNIST = DatasetInfo("mnist", "MNIST", 1, 28, 10, (0.1307,), (0.3081,))

STEM = {"0.weight": (64, 1, 3, 3), "0.bias": (64,), "1.weight": (64,), "1.bias": (64,),
        "3.weight": (64, 64, 4, 4), "3.bias": (64,), "4.weight": (64,), "4.bias": (64,)}
BRANCH = {"conv1.weight": (64, 64, 3, 3), "norm1.weight": (64,), "norm1.bias": (64,),
          "conv2.weight": (64, 64, 3, 3), "norm2.weight": (64,), "norm2.bias": (64,)}
ODEFUNC = {"conv1._layer.weight": (64, 65, 3, 3), "conv1._layer.bias": (64,), "norm1.weight": (64,),
           "norm1.bias": (64,), "conv2._layer.weight": (64, 65, 3, 3), "conv2._layer.bias": (64,),
           "norm2.weight": (64,), "norm2.bias": (64,)}

# The tensors of their released model_best.pth files (HanshuYAN/TisODE, checkpoints/MNIST_*_gaus_1),
# as `odebench convert` lists them.
RELEASED = {
    "yan2020_cnn": {**{f"net.{k}": v for k, v in STEM.items()}, **{f"net.6.{k}": v for k, v in BRANCH.items()},
                    "net.9.weight": (10, 64), "net.9.bias": (10,)},
    "yan2020_ode": {**{f"net.{k}": v for k, v in STEM.items()}, **{f"net.6.odefunc.{k}": v for k, v in ODEFUNC.items()},
                    "net.9.weight": (10, 64), "net.9.bias": (10,)},
    "yan2020_tisode": {**{f"module.downsampling_layers.{k}": v for k, v in STEM.items()},
                       **{f"module.feature_layers.{k}": v for k, v in BRANCH.items()},
                       "module.fc_layers.2.weight": (10, 64), "module.fc_layers.2.bias": (10,)},
}


def released_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the released file's names and shapes (GroupNorm scales near 1)."""
    g = torch.Generator().manual_seed(seed)
    return {k: 0.1 * torch.randn(shape, generator=g) + (1 if len(shape) == 1 and k.endswith("weight") else 0)
            for k, shape in RELEASED[name].items()}


def write_released(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.safetensors"
    save_file(released_state(name), str(path))
    return path


def loaded(name: str, tmp_path: Path) -> torch.nn.Module:
    """The model as `--model NAME --weights FILE` builds it from a released-layout file."""
    net, _, _ = ModelSource(registered=name, weights=write_released(tmp_path, name)).build(MNIST)
    return net.eval()


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_the_released_tensor_names_and_shapes_are_exactly_the_models(name: str) -> None:
    own = {k: tuple(v.shape) for k, v in build_model(name, MNIST).body.state_dict().items()}
    released = {k.removeprefix("module."): v for k, v in RELEASED[name].items()}
    assert own == released


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_a_released_layout_file_loads_strictly_through_model_and_weights(name: str, tmp_path: Path) -> None:
    net = loaded(name, tmp_path)
    state = {k.removeprefix("module."): v for k, v in released_state(name).items()}
    assert all(torch.equal(net.body.state_dict()[k], v) for k, v in state.items())


def test_a_file_with_a_missing_tensor_is_refused_naming_it(tmp_path: Path) -> None:
    state = released_state("yan2020_ode")
    del state["net.6.odefunc.norm2.bias"]
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with pytest.raises(UserError, match="missing: net.6.odefunc.norm2.bias"):
        ModelSource(registered="yan2020_ode", weights=path).build(MNIST)


def _gn(x: torch.Tensor, s: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    return F.group_norm(x, 32, s[key + ".weight"], s[key + ".bias"])


def _stem(x: torch.Tensor, s: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    y = F.relu(_gn(F.conv2d(x, s[p + "0.weight"], s[p + "0.bias"]), s, p + "1"))  # no padding: 28 -> 26
    return F.relu(_gn(F.conv2d(y, s[p + "3.weight"], s[p + "3.bias"], stride=2, padding=1), s, p + "4"))


def _branch(y: torch.Tensor, s: dict[str, torch.Tensor], p: str, t: float | None) -> torch.Tensor:
    def conv(z: torch.Tensor, k: str) -> torch.Tensor:
        if t is None:
            return F.conv2d(z, s[p + k + ".weight"], padding=1)
        z = torch.cat([torch.full_like(z[:, :1], t), z], 1)
        return F.conv2d(z, s[p + k + "._layer.weight"], s[p + k + "._layer.bias"], padding=1)

    return F.relu(_gn(conv(F.relu(_gn(conv(y, "conv1"), s, p + "norm1")), "conv2"), s, p + "norm2"))


def reference(name: str, x: torch.Tensor, s: dict[str, torch.Tensor]) -> torch.Tensor:
    """Their forward by hand: stem, then one residual step (CNN) or Euler steps of 0.1 (ODENet, time
    channel) or 0.05 (TisODE, no time input) over [0, 1], then pool and linear."""
    s = {k.removeprefix("module."): v for k, v in s.items()}
    if name == "yan2020_tisode":
        y = _stem(x, s, "downsampling_layers.")
        for i in range(20):
            y = y + 0.05 * _branch(y, s, "feature_layers.", None)
        return F.linear(y.mean((2, 3)), s["fc_layers.2.weight"], s["fc_layers.2.bias"])
    y = _stem(x, s, "net.")
    if name == "yan2020_cnn":
        y = y + _branch(y, s, "net.6.", None)
    else:
        for i in range(10):
            y = y + 0.1 * _branch(y, s, "net.6.odefunc.", i * 0.1)
    return F.linear(y.mean((2, 3)), s["net.9.weight"], s["net.9.bias"])


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_the_forward_is_the_published_one_on_raw_pixels(name: str, tmp_path: Path) -> None:
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = loaded(name, tmp_path)(x)
    torch.testing.assert_close(ours, reference(name, x, released_state(name)), rtol=1e-4, atol=1e-4)


def test_the_ode_nets_count_their_euler_steps_and_take_a_surrogate_solver(tmp_path: Path) -> None:
    ode, tisode = loaded("yan2020_ode", tmp_path), loaded("yan2020_tisode", tmp_path)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        ode(x), tisode(x)
    assert nfe_of(ode)["nfe_forward"] == 10 and nfe_of(tisode)["nfe_forward"] == 20
    assert nfe_of(loaded("yan2020_cnn", tmp_path)) is None
    rk4 = solver_surrogate(ode, solver="rk4", step_size=0.1)
    with torch.no_grad():
        rk4(x)
    assert nfe_of(rk4)["nfe_forward"] == 40
    assert {id(p) for p in rk4.parameters()} == {id(p) for p in ode.parameters()}


def test_an_odebench_checkpoint_keeps_the_published_names_and_loads_back(tmp_path: Path) -> None:
    model = loaded("yan2020_ode", tmp_path)
    save_checkpoint(tmp_path / "ckpt", model, {"model": "yan2020_ode", "model_options": {}, "dataset": "mnist",
                                              "dataset_info": MNIST.to_dict(), "method": "standard"})
    again, _ = load_checkpoint(tmp_path / "ckpt")
    assert "body.net.6.odefunc.conv1._layer.weight" in again.state_dict()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_attack_takes_a_registered_model_with_released_weights(tmp_path: Path) -> None:
    from .helpers import odebench

    weights = write_released(tmp_path, "yan2020_cnn")
    result = odebench("attack", "--model", "yan2020_cnn", "--weights", weights, "--dataset", "digits", "-a", "fgsm",
                      "--eps", "0.1", "--n-samples", "20", "--device", "cpu", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "out" / "results.csv").read_text()
    assert "yan2020_cnn" in rows


@pytest.mark.parametrize("args, message", [
    (["--model", "yan2020_nope"], "registered model"),
    (["--model", "yan2020_cnn", "--normalize", "dataset"], "normalise inside"),
])
def test_a_bad_registered_model_option_is_one_line(args: list[str], message: str) -> None:
    from .helpers import odebench

    result = odebench("attack", *args, "--dataset", "digits", "-a", "fgsm", "--eps", "0.1")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_the_audit_swaps_the_solver_of_a_registered_ode_without_with_solver(tmp_path: Path) -> None:
    from robustbench_ode.diagnostics.audited import AuditConfig, ode_surrogates

    model = loaded("yan2020_ode", tmp_path)
    (name, surrogate), = ode_surrogates(model, AuditConfig(eps=0.1)).items()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        surrogate(x)
    assert name == "rk4 h=0.1" and nfe_of(surrogate)["nfe_forward"] == 40
    assert ode_surrogates(loaded("yan2020_cnn", tmp_path), AuditConfig(eps=0.1)) == {}


def test_autoattacks_surrogate_member_finds_the_solver_of_a_registered_ode(tmp_path: Path) -> None:
    from robustbench_ode.attacks.autoattack import ode_decider

    ode = loaded("yan2020_ode", tmp_path)
    assert ode_decider(ode) is ode and ode_decider(loaded("yan2020_cnn", tmp_path)) is None
