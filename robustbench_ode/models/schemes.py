"""Residual families as one-step numerical schemes over a vector field `f` with step size `h`.

Section 3 of the paper (after Lu et al. 2018) reads each skip-connection family as one step of
an ODE solver; here each family *is* that step, the way torchdiffeq writes a solver as one step
function plus a name -> solver table:

- ResNet (He et al. 2016), Eq. 4: forward Euler, `y + h f(y)`.
- FractalNet (Larsson et al. 2016), Sec. 3.3.2, Eq. 20: Heun's RK2,
  `y + h/2 (f(y) + f(y + h f(y)))`.
- PolyNet (Zhang et al. 2017), Sec. 3.3.1, Eq. 15: `(I + hF + (hF)^2) y`, a second-order
  truncation of backward Euler's `(I - hF)^-1`.
- RevNet (Gomez et al. 2017), Sec. 3.3.3, Eqs. 21-22: forward Euler on the coupled system
  `X' = F(Y), Y' = G(X)`, updating the two channel halves one after the other.

A step takes `f` (one residual function, or for `rev` the pair `(F, G)`), the state `y` and `h`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Field = Callable[[Tensor], Tensor]
Step = Callable[..., Tensor]


def euler(f: Field, y: Tensor, h: float) -> Tensor:
    """Forward Euler: `y + h f(y)` (a ResNet block with step size h)."""
    return y + h * f(y)


def heun(f: Field, y: Tensor, h: float) -> Tensor:
    """Heun's method (explicit trapezoid, RK2): `y + h/2 (f(y) + f(y + h f(y)))`."""
    k1 = f(y)
    k2 = f(y + h * k1)
    return y + 0.5 * h * (k1 + k2)


def poly(f: Field, y: Tensor, h: float) -> Tensor:
    """PolyNet's second-order polynomial step: `y + h f(y) + h f(h f(y))`."""
    hf = h * f(y)
    return y + hf + h * f(hf)


def rev(f: tuple[Field, Field], y: Tensor, h: float) -> Tensor:
    """RevNet's additive coupling on channel halves: `y1 += h F(y2)`, then `y2 += h G(y1)`."""
    big_f, big_g = f
    y1, y2 = torch.chunk(y, 2, dim=1)
    y1 = y1 + h * big_f(y2)
    y2 = y2 + h * big_g(y1)
    return torch.cat([y1, y2], dim=1)


@dataclass(frozen=True)
class Scheme:
    """A step function and what a block must build for it.

    `fields` is how many residual functions the step consumes; `coupled` says each acts on one
    half of the channels (so the block builds them at half width).
    """

    name: str
    step: Step
    fields: int
    coupled: bool
    family: str


SCHEMES: dict[str, Scheme] = {
    "euler": Scheme("euler", euler, 1, False, "ResNet (He et al. 2016)"),
    "heun": Scheme("heun", heun, 1, False, "FractalNet (Larsson et al. 2016)"),
    "poly": Scheme("poly", poly, 1, False, "PolyNet (Zhang et al. 2017)"),
    "rev": Scheme("rev", rev, 2, True, "RevNet (Gomez et al. 2017)"),
}
