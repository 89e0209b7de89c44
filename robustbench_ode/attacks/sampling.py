"""Seeded randomness for attacks: a private `torch.Generator` per call, so results repeat and the
global RNG is left alone."""
from __future__ import annotations

import torch
from torch import Tensor


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on `device` seeded with `seed`."""
    return torch.Generator(device=device).manual_seed(seed)


def rademacher(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    """Independent ±1 entries with the dtype and device of `like`."""
    bits = torch.randint(0, 2, shape, generator=gen, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def random_in_ball(x: Tensor, eps: float, norm: str, gen: torch.Generator) -> Tensor:
    """A uniform random point of the eps-ball around each sample, clamped to [0, 1].

    L∞: uniform in the cube (Madry et al. 2018). L2: Gaussian direction, radius eps * U^(1/d),
    which is uniform in the ball.
    """
    if norm == "linf":
        delta = (2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1) * eps
    else:
        direction = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype).flatten(1)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
        u = torch.rand(len(x), 1, generator=gen, device=x.device, dtype=x.dtype)
        delta = (direction * eps * u ** (1.0 / direction.shape[1])).view_as(x)
    return (x + delta).clamp(0.0, 1.0)
