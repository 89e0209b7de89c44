"""Geometry of the threat model: norms, projection onto the eps-ball and the [0, 1] box, and
steepest-ascent directions (sign for L∞, unit gradient for L2)."""
from __future__ import annotations

import torch
from torch import Tensor

_TINY = 1e-12


def lp_norm(delta: Tensor, norm: str) -> Tensor:
    """Per-sample norm (N,) of a batch of perturbations."""
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def _per_sample(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def project(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Nearest point of the eps-ball around `x` (L∞ clamp or L2 rescale), then clamped to [0, 1].

    Clamping to the box after the ball never leaves the ball: it only shrinks |x_adv - x|
    coordinate-wise because `x` itself is in [0, 1].
    """
    if norm == "linf":
        inside = torch.min(torch.max(x_adv, x - eps), x + eps)
    else:
        delta = x_adv - x
        scale = (eps / lp_norm(delta, "l2").clamp_min(_TINY)).clamp(max=1.0)
        inside = x + delta * _per_sample(scale, delta)
    return inside.clamp(0.0, 1.0)


def steepest_direction(grad: Tensor, norm: str) -> Tensor:
    """The unit-norm direction of steepest ascent: sign(grad) for L∞, grad/||grad||2 for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / _per_sample(lp_norm(grad, "l2").clamp_min(_TINY), grad)
