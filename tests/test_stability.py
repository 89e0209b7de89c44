"""Specification of the stability measurement (paper, Theorem 3.1): on linear toys the measured
amplification of a perturbation along depth is the closed form — (I + hA)^n for a linear ResNet,
e^{at} for dy/dt = a y — and registered ResNets and Neural ODEs are followed block by block and
on a time grid."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from robustbench_ode.diagnostics import depth_of, measure, stability_rows
from robustbench_ode.diagnostics.command import parse_sizes
from robustbench_ode.diagnostics.stability import perturbation
from robustbench_ode.checkpoint import save_checkpoint
from robustbench_ode.errors import UserError
from robustbench_ode.models import build_model
from robustbench_ode.models.ode_block import ODEBlock, SolverConfig
from robustbench_ode.models.scheme_net import SchemeNet

from .helpers import odebench

CHANNELS, SIDE, BLOCKS = 3, 4, 6


def linear_resnet(a: Tensor, h: float) -> SchemeNet:
    """A float64 ResNet whose every residual function is f(y) = A y (a 1x1 conv, per pixel) and
    whose stem is the identity, so z_0 − y_0 is the input perturbation itself."""

    def field(c_in: int, c_out: int, stride: int) -> nn.Module:
        conv = nn.Conv2d(c_in, c_out, 1, bias=False)
        conv.weight.data = a.view(CHANNELS, CHANNELS, 1, 1).clone()
        return conv

    net = SchemeNet(CHANNELS, 2, "euler", (CHANNELS,), (BLOCKS,), field, h, CHANNELS, stem_norm=False).double()
    stem = torch.zeros_like(net.stem[0].weight)
    stem[range(CHANNELS), range(CHANNELS), 1, 1] = 1.0
    net.stem[0].weight.data = stem
    return net.eval()


class Linear(nn.Module):
    """f(t, y) = a y."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = a

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.a * y


def linear_ode(a: float, t1: float) -> nn.Module:
    config = SolverConfig(solver="dopri5", rtol=1e-10, atol=1e-12, t1=t1)
    return nn.Sequential(ODEBlock(Linear(a), config), nn.Flatten())


def toy_batch() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, CHANNELS, SIDE, SIDE, generator=g, dtype=torch.float64)
    return x, 1e-3 * torch.randn(x.shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("h", [0.0, 0.1, 0.5])
def test_amplification_of_a_linear_resnet_is_the_norm_of_the_euler_step_matrix_power(h):
    a = torch.randn(CHANNELS, CHANNELS, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x, delta = toy_batch()
    step = torch.eye(CHANNELS, dtype=torch.float64) + h * a
    expected = torch.stack([
        torch.einsum("ij,njhw->nihw", torch.linalg.matrix_power(step, n), delta).flatten(1).norm(dim=1)
        / delta.flatten(1).norm(dim=1)
        for n in range(BLOCKS + 1)
    ], dim=1)
    torch.testing.assert_close(measure(linear_resnet(a, h), x, delta).amplification, expected)


def test_lipschitz_ratio_of_a_linear_resnet_field_lies_within_its_singular_values():
    a = torch.randn(CHANNELS, CHANNELS, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x, delta = toy_batch()
    lips = measure(linear_resnet(a, 0.1), x, delta).lipschitz
    singular = torch.linalg.svdvals(a)
    assert lips.shape == (len(x), BLOCKS)
    assert (lips <= singular.max() + 1e-9).all() and (lips >= singular.min() - 1e-9).all()


@pytest.mark.parametrize("a", [-1.0, 0.5])
def test_amplification_of_a_linear_ode_is_exponential_in_time_and_its_lipschitz_ratio_is_the_rate(a):
    model = linear_ode(a, t1=2.0)
    x, delta = toy_batch()
    depth = depth_of(model, points=5)
    m = measure(model, x, delta, depth)
    expected = torch.tensor([math.exp(a * t) for t in depth.times], dtype=torch.float64).expand(len(x), -1)
    torch.testing.assert_close(m.amplification, expected, rtol=1e-7, atol=0)
    torch.testing.assert_close(m.lipschitz, torch.full((len(x), 4), abs(a), dtype=torch.float64))


@pytest.mark.parametrize("kind", ["random", "adversarial"])
def test_perturbations_have_the_requested_l2_size_and_the_adversarial_one_follows_the_gradient(kind, digits):
    model = build_model("resnet_small", digits.info, width=4).eval()
    x, y = digits.test_x[:6], digits.test_y[:6]
    delta = perturbation(model, x, y, kind, 0.5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(delta.flatten(1).norm(dim=1), torch.full((6,), 0.5))
    if kind == "adversarial":
        x_req = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(nn.functional.cross_entropy(model(x_req), y, reduction="sum"), x_req)
        assert torch.equal(delta.sign(), grad.sign())


@pytest.mark.parametrize("name, options, states", [
    ("resnet_small", {"width": 4, "h": 0.5}, 3 + 1),
    ("odenet", {"channels": 4, "conv_layers": 1}, 5),
])
def test_registered_models_are_followed_block_by_block_or_on_the_time_grid(digits, name, options, states):
    model = build_model(name, digits.info, **options).eval()
    x, y = digits.test_x[:4], digits.test_y[:4]
    rows = stability_rows(model, name, x, y, sizes=[1e-2], kinds=("random",), points=5)
    assert [r["depth"] for r in rows] == list(range(states))
    assert rows[0]["amplification"] == pytest.approx(1.0) and rows[-1]["position"] == 1.0
    assert all(math.isfinite(r["lipschitz"]) for r in rows[:-1]) and math.isnan(rows[-1]["lipschitz"])
    if name == "resnet_small":
        assert [r["time"] for r in rows] == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_a_model_without_residual_blocks_or_ode_is_a_user_error():
    with pytest.raises(UserError, match="neither residual blocks"):
        depth_of(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))


def test_cli_compares_several_checkpoints_in_one_csv_and_plot(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    paths = []
    for name, options in [("resnet_small", {"width": 4, "h": 0.1}), ("odenet", {"channels": 4, "conv_layers": 1})]:
        torch.manual_seed(0)
        model = build_model(name, digits.info, **options)
        path = tmp_path / name
        save_checkpoint(path, model, {"model": name, "model_options": options, "dataset": "digits",
                                      "dataset_info": digits.info.to_dict()})
        paths.append(path)
    proc = odebench("stability", paths[0], "--checkpoint", paths[1], "--n-samples", "8", "--sizes", "0.01,0.1",
                    "--time-points", "4", "--device", "cpu", "--out", tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(tmp_path / "s" / "stability.csv")
    assert set(df["model"]) == {"resnet_small", "odenet"} and set(df["kind"]) == {"random", "adversarial"}
    assert len(df) == 2 * 2 * (4 + 4)  # kinds x sizes x (resnet: stem + 3 blocks; odenet: 4 time points)
    assert (tmp_path / "s" / "stability.png").stat().st_size > 0


@pytest.mark.parametrize("sizes", ["0,0.1", "-1", "a,b", ""])
def test_sizes_must_be_positive_numbers(sizes):
    with pytest.raises(UserError, match="^sizes must be") as err:
        parse_sizes(sizes)
    assert err.value.options == ["sizes"]
