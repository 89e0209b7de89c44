"""Square Attack: score-based, gradient-free random search (Andriushchenko et al. 2020), L∞."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..registry import ATTACKS
from .base import Attack, check_positive
from .losses import margin
from .sampling import SampleRNG, _combine, _mix

_RESAMPLE_TRIES = 10  # redraws of a window whose proposal would not change the image
_BLOCK = 128  # queries whose random numbers are drawn at once


class _Draws:
    """The random numbers of Square's proposals, `block` queries at a time for every sample of the
    run: exactly what `SampleRNG.integers(high, 1, it)`, `.integers(high, 2, it)` and
    `.rademacher((c, 1, 1), 3, it, attempt)` (attempt < `_RESAMPLE_TRIES`) give, but hashed as
    one (samples x queries) tensor per block instead of a dozen tiny tensor operations per query
    and sample set."""

    def __init__(self, rng: SampleRNG, channels: int, block: int = _BLOCK) -> None:
        self.channels, self.block = channels, block
        self.keyed = [_combine(rng.state, key)[:, None] for key in (1, 2, 3)]  # the draws' first keys
        self.first: int | None = None

    def _fill(self, first: int) -> None:
        self.first = first
        device = self.keyed[0].device
        its = torch.arange(first, first + self.block, dtype=torch.int64, device=device)
        pos0 = _mix(torch.zeros((), dtype=torch.int64, device=device))
        self.corners = [((_mix(_combine(keyed, its) ^ pos0) >> 8).double() * 2.0**-24) for keyed in self.keyed[:2]]
        keyed = _combine(self.keyed[2], its)  # keys (3, it)
        # channel k's sign is bit k % 32 of word k // 32 (`SampleRNG.rademacher`): only those bits
        words = [(_mix(torch.tensor(j, dtype=torch.int64, device=device)),
                  torch.arange(min(32, self.channels - 32 * j), device=device))
                 for j in range((self.channels + 31) // 32)]
        tries = []
        for attempt in range(_RESAMPLE_TRIES):  # keys (3, it, attempt)
            state = _combine(keyed, attempt)
            tries.append(torch.cat([((_mix(state ^ pos)[..., None] >> shifts) & 1).to(torch.int8)
                                    for pos, shifts in words], dim=2))
        self.bits = torch.stack(tries, dim=2)  # (n, block, tries, c)

    def _at(self, it: int) -> int:
        if self.first is None or not self.first <= it < self.first + self.block:
            self._fill(it - it % self.block)
        return it - self.first  # type: ignore[operator]

    def window(self, rows: Tensor, it: int, high: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Top and left corners in [0, high[0]) and [0, high[1]) of the samples `rows` (indices
        into the run's samples) at query `it`."""
        j = self._at(it)
        top, left = ((u[rows, j] * bound).floor().long() for u, bound in zip(self.corners, high))
        return top, left

    def sign_bits(self, rows: Tensor, it: int) -> Tensor:
        """(m, tries, c) bits of the samples `rows` at query `it`, one row per try: 1 for +1, 0 for −1."""
        return self.bits[rows, self._at(it)]


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
        draws, rows = _Draws(rng[idx], c), torch.arange(len(idx), device=x.device)  # rows: into the first idx
        for it in range(self.budget - 1):
            logits = self.logits(model, x_new)
            new_loss = margin(logits, yk)
            better = new_loss > loss
            xk = torch.where(better.view(-1, 1, 1, 1), x_new, xk)
            loss = torch.where(better, new_loss, loss)
            keep = record.record(idx, x_new, self.succeeded(logits, yk))
            if not keep.all():
                idx, rows, x0, yk, xk, loss = idx[keep], rows[keep], x0[keep], yk[keep], xk[keep], loss[keep]
            if it == self.budget - 2 or len(idx) == 0:
                break
            side = round(math.sqrt(square_fraction(self.p_init, it, self.budget) * h * w))
            x_new = self._propose(draws, rows, it, x0, xk, eps, min(max(side, 1), min(h, w) - 1))
        record.finish(idx, xk)
        return record.x_adv

    def _propose(self, draws: _Draws, rows: Tensor, it: int, x0: Tensor, xk: Tensor, eps: float, side: int) -> Tensor:
        """Set a random side x side window of each image to x0 ± eps (one sign per channel); the
        draws of query `it` (`rows`: the images' rows in `draws`). An image the signs would not
        change takes those of the next try, up to `_RESAMPLE_TRIES` tries (the last one's if none
        changes it): each image's first try that changes it, found for all tries at once."""
        m, c, h, w = xk.shape
        top, left = draws.window(rows, it, (h - side + 1, w - side + 1))
        top, left = top.view(m, 1, 1, 1), left.view(m, 1, 1, 1)
        ys = torch.arange(h, device=xk.device).view(1, 1, h, 1)
        xs = torch.arange(w, device=xk.device).view(1, 1, 1, w)
        window = (ys >= top) & (ys < top + side) & (xs >= left) & (xs < left + side)
        # per image and channel: does setting the window to x0 − eps / x0 + eps change anything?
        down, up = ((((x0 + sign * eps).clamp(0.0, 1.0) != xk) & window).flatten(2).any(dim=2) for sign in (-1.0, 1.0))
        bits = draws.sign_bits(rows, it)  # (m, tries, c)
        changes = torch.where(bits.bool(), up[:, None, :], down[:, None, :]).any(dim=2)  # (m, tries)
        first = torch.where(changes.any(dim=1), changes.byte().argmax(dim=1), _RESAMPLE_TRIES - 1)
        chosen = bits[torch.arange(m, device=bits.device), first]  # (m, c)
        signs = (eps * (2 * chosen - 1).to(xk.dtype)).view(m, c, 1, 1)
        return torch.where(window, (x0 + signs).clamp(0.0, 1.0), xk)
