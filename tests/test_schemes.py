"""Residual families are numerical schemes: each step equals its formula, each family uses its step."""
from __future__ import annotations

import pytest
import torch

from robustbench_ode.data.base import DatasetInfo
from robustbench_ode.models import build_model
from robustbench_ode.models.scheme_net import ProjectionBlock, SchemeBlock
from robustbench_ode.models.schemes import SCHEMES, euler, heun, poly, rev

H = 0.3
DIM = 6


def linear(matrix: torch.Tensor):
    """The vector field f(y) = A y on (N, d) batches."""
    return lambda y: y @ matrix.T


@pytest.fixture
def system() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(DIM, DIM, generator=g, dtype=torch.float64)
    return a, torch.randn(5, DIM, generator=g, dtype=torch.float64)


def test_euler_is_one_forward_euler_step(system):
    a, y = system
    expected = y @ (torch.eye(DIM, dtype=a.dtype) + H * a).T
    torch.testing.assert_close(euler(linear(a), y, H), expected)


def test_heun_matches_rk2_on_a_linear_field(system):
    a, y = system
    ha = H * a
    expected = y @ (torch.eye(DIM, dtype=a.dtype) + ha + ha @ ha / 2).T
    torch.testing.assert_close(heun(linear(a), y, H), expected)


def test_poly_is_the_second_order_operator_polynomial(system):
    a, y = system
    ha = H * a
    expected = y @ (torch.eye(DIM, dtype=a.dtype) + ha + ha @ ha).T
    torch.testing.assert_close(poly(linear(a), y, H), expected)


def test_rev_is_euler_on_the_coupled_system_as_one_block_matrix():
    # y1' = y1 + hB y2, y2' = y2 + hC y1'  <=>  y' = [[I, hB], [hC, I + h^2 CB]] y
    g = torch.Generator().manual_seed(1)
    b, c = (torch.randn(3, 3, generator=g, dtype=torch.float64) for _ in range(2))
    y = torch.randn(5, 6, generator=g, dtype=torch.float64)  # channels split 3 + 3
    eye = torch.eye(3, dtype=b.dtype)
    step = torch.cat([torch.cat([eye, H * b], 1), torch.cat([H * c, eye + H * H * c @ b], 1)], 0)
    torch.testing.assert_close(rev((linear(b), linear(c)), y, H), y @ step.T)


def test_every_scheme_is_in_the_table_with_its_field_count():
    assert {name: (s.step, s.fields) for name, s in SCHEMES.items()} == {
        "euler": (euler, 1),
        "heun": (heun, 1),
        "poly": (poly, 1),
        "rev": (rev, 2),
    }


INFO = DatasetInfo("toy", "toy", 3, 8, 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))

def rev_formula(f, y, h):
    y1, y2 = y.chunk(2, dim=1)
    y1 = y1 + h * f[0](y2)
    return torch.cat([y1, y2 + h * f[1](y1)], dim=1)


# Each family's block, written out as the paper's formula over the block's own residual functions.
FAMILIES = {
    "resnet20": ("euler", lambda f, y, h: y + h * f[0](y)),
    "resnet50": ("euler", lambda f, y, h: y + h * f[0](y)),
    "preact_resnet18": ("euler", lambda f, y, h: y + h * f[0](y)),
    "fractalnet": ("heun", lambda f, y, h: y + h / 2 * (f[0](y) + f[0](y + h * f[0](y)))),
    "polynet": ("poly", lambda f, y, h: y + h * f[0](y) + h * f[0](h * f[0](y))),
    "revnet": ("rev", rev_formula),
}


def scheme_blocks(model: torch.nn.Module) -> list[SchemeBlock]:
    return [m for m in model.modules() if isinstance(m, SchemeBlock)]


def block_input(block: SchemeBlock) -> torch.Tensor:
    """A random state of the shape `block` keeps (coupled schemes see twice a field's channels)."""
    conv = next(m for m in block.fields[0].modules() if isinstance(m, torch.nn.Conv2d))
    return torch.randn(2, conv.in_channels * (2 if block.scheme.coupled else 1), 4, 4)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_steps_its_blocks_with_its_scheme(name):
    scheme, formula = FAMILIES[name]
    torch.manual_seed(0)
    model = build_model(name, INFO, width=4, h=0.5).eval()
    blocks = scheme_blocks(model)
    assert blocks and {b.scheme.name for b in blocks} == {scheme}
    block = blocks[0]
    y = block_input(block)
    with torch.no_grad():
        torch.testing.assert_close(block(y), formula(list(block.fields), y, 0.5))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_step_size_zero_makes_shape_keeping_blocks_the_identity(name):
    model = build_model(name, INFO, width=4, h=0.0).eval()
    for block in scheme_blocks(model):
        y = block_input(block)
        with torch.no_grad():
            assert torch.equal(block(y), y)


def test_step_size_zero_leaves_only_the_projection_shortcut():
    model = build_model("resnet_small", INFO, width=4, h=0.0).eval()
    projections = [m for m in model.modules() if isinstance(m, ProjectionBlock)]
    assert len(projections) == 2
    y = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(projections[0](y), projections[0].shortcut(y))


def test_the_residual_update_scales_with_h():
    torch.manual_seed(0)
    small = build_model("resnet20", INFO, width=4, h=0.25).eval().double()
    big = build_model("resnet20", INFO, width=4, h=1.0).eval().double()
    big.load_state_dict(small.state_dict())
    y = block_input(scheme_blocks(small)[0]).double()
    with torch.no_grad():
        step_small = scheme_blocks(small)[0](y) - y
        step_big = scheme_blocks(big)[0](y) - y
    torch.testing.assert_close(4 * step_small, step_big)
