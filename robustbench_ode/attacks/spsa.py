"""SPSA: gradient-free attack with finite-difference gradient estimates (Uesato et al. 2018)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..registry import ATTACKS
from .ball import project
from .base import Attack, check_positive
from .losses import margin
from .sampling import SampleRNG, random_in_ball

_MAX_FORWARD = 2048  # images per forward pass when evaluating the perturbation pairs
_PAIRS_PER_SUM = 8  # pairs summed at a time: fixed, so the sum rounds alike in every batch
_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8


@ATTACKS.register("spsa", "Uesato et al. 2018 SPSA: finite-difference gradient estimates + Adam, L∞")
class SPSA(Attack):
    """SPSA attack (Uesato, O'Donoghue, van den Oord & Kohli, "Adversarial Risk and the Dangers of
    Evaluating Against Weak Attacks", ICML 2018). Norm: L∞.

    Each step estimates the gradient of the margin loss max_{j≠y} z_j − z_y from `samples` pairs
    of Rademacher perturbations v: ĝ = mean_i [f(x + δv_i) − f(x − δv_i)] / (2δ) · v_i, takes an
    Adam step of learning rate `lr` and projects onto the eps-ball and [0, 1]. It starts uniformly
    in the ball (as CleverHans' implementation), makes only forward passes (grad_calls stays 0)
    and stops a sample at its first misclassified iterate. Per sample and step: 2·samples + 1
    queries.

    Options:
        steps: Adam steps.
        samples: perturbation pairs per step.
        delta: finite-difference scale δ.
        lr: Adam learning rate.
        seed: seed of the start and the perturbations.

    Example::

        x_adv = ATTACKS.get("spsa").build(steps=50)(model, x, y, eps=0.3)
    """

    name = "spsa"
    uses_gradients = False
    norm = "linf"
    batch_independent = True

    def __init__(
        self, *, steps: int = 100, samples: int = 128, delta: float = 0.01, lr: float = 0.01, seed: int = 0
    ) -> None:
        super().__init__()
        check_positive(self.name, steps=steps, samples=samples, delta=delta, lr=lr)
        self.steps = steps
        self.samples = samples
        self.delta = delta
        self.lr = lr
        self.seed = seed

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        rng = self.rng(x.device)
        record = self.track(model, x, y)
        idx = record.pending()
        x0, yk = x[idx], y[idx]
        xk = random_in_ball(x0, eps, "linf", rng[idx], 0)
        m, v = torch.zeros_like(xk), torch.zeros_like(xk)
        (b1, b2) = _BETAS
        for step in range(self.steps + 1):
            if len(idx) == 0:
                break
            keep = record.record(idx, xk, self.succeeded(self.logits(model, xk), yk))
            idx, x0, yk, xk, m, v = (t[keep] for t in (idx, x0, yk, xk, m, v))
            if step == self.steps or len(idx) == 0:
                break
            g = self.estimate_gradient(model, xk, yk, rng[idx], step)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** (step + 1)), v / (1 - b2 ** (step + 1))
            xk = project(xk + self.lr * m_hat / (v_hat.sqrt() + _ADAM_EPS), x0, eps, "linf")
        record.finish(idx, xk)
        return record.x_adv

    def estimate_gradient(self, model: nn.Module, x: Tensor, y: Tensor, rng: SampleRNG, step: int) -> Tensor:
        """SPSA estimate of ∇x margin from `samples` antithetic Rademacher pairs (forward only).

        The pairs of `step` are drawn per sample (one row of `rng` each) and summed in groups of
        a fixed size, so a sample's estimate, to the last bit, does not depend on its batch.
        """
        n, size = len(x), x[0].numel()
        per_forward = max(1, _MAX_FORWARD // (2 * n))
        chunk = max(_PAIRS_PER_SUM, per_forward - per_forward % _PAIRS_PER_SUM)
        grad = torch.zeros_like(x)
        for first in range(0, self.samples, chunk):
            k = min(chunk, self.samples - first)
            v = rng.rademacher((k, *x.shape[1:]), 1, step, offset=first * size, like=x)
            probes = torch.cat([x[:, None] + self.delta * v, x[:, None] - self.delta * v], dim=1).flatten(0, 1)
            logits = torch.cat([self.logits(model, part) for part in probes.split(_MAX_FORWARD)])
            f = margin(logits, y.repeat_interleave(2 * k)).view(n, 2 * k)
            diff = ((f[:, :k] - f[:, k:]) / (2 * self.delta)).view(n, k, *([1] * (x.dim() - 1)))
            for group in range(0, k, _PAIRS_PER_SUM):
                grad += (diff[:, group : group + _PAIRS_PER_SUM] * v[:, group : group + _PAIRS_PER_SUM]).sum(dim=1)
        return grad / self.samples
