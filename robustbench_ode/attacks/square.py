"""Square Attack: score-based, gradient-free random search (Andriushchenko et al. 2020), L∞."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..registry import ATTACKS
from .base import Attack, check_positive
from .losses import margin
from .sampling import SampleRNG

_RESAMPLE_TRIES = 10  # redraws of a window whose proposal would not change the image


def square_fraction(p_init: float, it: int, budget: int) -> float:
    """The paper's schedule: the fraction p of pixels changed halves at fixed points of a
    10,000-query run, rescaled to `budget` queries."""
    it = int(it / budget * 10000)
    halvings = sum(it > t for t in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return p_init / 2**halvings


@ATTACKS.register("square", "Andriushchenko et al. 2020 Square Attack: gradient-free L∞ random search")
class Square(Attack):
    """Square Attack (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
    black-box adversarial attack via random search", ECCV 2020), L∞ version. Norm: L∞.

    Starts from vertical stripes of ±eps, then each query proposes, per image, a random square
    window whose every channel is set to a random ±eps, and keeps it if the margin loss
    max_{j≠y} z_j − z_y rises. Only forward passes are made (grad_calls stays 0); a sample stops
    at its first misclassified point.

    Options:
        queries: model evaluations per sample, the clean check included (paper: up to 10,000).
        p_init: initial fraction of pixels in the square (paper's schedule halves it over time).
        seed: seed of the random search.

    Example::

        x_adv = ATTACKS.get("square").build(queries=5000)(model, x, y, eps=8 / 255)
    """

    name = "square"
    uses_gradients = False
    norm = "linf"
    batch_independent = True

    def __init__(self, *, queries: int = 1000, p_init: float = 0.05, seed: int = 0) -> None:
        super().__init__()
        if queries < 2:
            raise UserError(f"attack '{self.name}': queries must be >= 2 (clean check + start), got {queries}")
        check_positive(self.name, p_init=p_init)
        self.budget = queries
        self.p_init = p_init
        self.seed = seed

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        rng = self.rng(x.device)
        _, c, h, w = x.shape
        record = self.track(model, x, y)
        idx = record.pending()
        if len(idx) == 0:
            return record.x_adv
        x0, yk = x[idx], y[idx]
        x_new = (x0 + eps * rng[idx].rademacher((c, 1, w), 0, like=x)).clamp(0.0, 1.0)  # the stripes
        xk, loss = x_new, torch.full((len(idx),), -math.inf, device=x.device, dtype=x.dtype)
        for it in range(self.budget - 1):
            logits = self.logits(model, x_new)
            new_loss = margin(logits, yk)
            better = new_loss > loss
            xk = torch.where(better.view(-1, 1, 1, 1), x_new, xk)
            loss = torch.where(better, new_loss, loss)
            keep = record.record(idx, x_new, self.succeeded(logits, yk))
            idx, x0, yk, xk, loss = idx[keep], x0[keep], yk[keep], xk[keep], loss[keep]
            if it == self.budget - 2 or len(idx) == 0:
                break
            side = round(math.sqrt(square_fraction(self.p_init, it, self.budget) * h * w))
            x_new = self._propose(rng[idx], it, x0, xk, eps, min(max(side, 1), min(h, w) - 1))
        record.finish(idx, xk)
        return record.x_adv

    def _propose(self, rng: SampleRNG, it: int, x0: Tensor, xk: Tensor, eps: float, side: int) -> Tensor:
        """Set a random side x side window of each image to x0 ± eps (one sign per channel); the
        draws of query `it` (one row of `rng` per image)."""
        m, c, h, w = xk.shape
        top = rng.integers(h - side + 1, 1, it).view(m, 1, 1, 1)
        left = rng.integers(w - side + 1, 2, it).view(m, 1, 1, 1)
        rows = torch.arange(h, device=xk.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=xk.device).view(1, 1, 1, w)
        window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        signs = eps * rng.rademacher((c, 1, 1), 3, it, 0, like=xk)
        for attempt in range(1, _RESAMPLE_TRIES + 1):
            x_new = torch.where(window, (x0 + signs).clamp(0.0, 1.0), xk)
            same = (x_new == xk).flatten(1).all(dim=1)
            if not same.any():
                break
            redrawn = eps * rng.rademacher((c, 1, 1), 3, it, attempt, like=xk)
            signs = torch.where(same.view(-1, 1, 1, 1), redrawn, signs)
        return x_new
