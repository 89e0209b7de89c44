"""SPSA: gradient-free attack with finite-difference gradient estimates (Uesato et al. 2018)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..registry import ATTACKS
from .ball import project
from .base import Attack, check_positive
from .losses import margin
from .sampling import make_generator, rademacher, random_in_ball

_MAX_FORWARD = 2048  # images per forward pass when evaluating the perturbation pairs
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
        gen = make_generator(self.seed, x.device)
        start = random_in_ball(x, eps, "linf", gen)
        record = self.track(model, x, y)
        idx = record.pending()
        x0, yk, xk = x[idx], y[idx], start[idx]
        m, v = torch.zeros_like(xk), torch.zeros_like(xk)
        (b1, b2) = _BETAS
        for step in range(self.steps + 1):
            if len(idx) == 0:
                break
            keep = record.record(idx, xk, self.succeeded(self.logits(model, xk), yk))
            idx, x0, yk, xk, m, v = (t[keep] for t in (idx, x0, yk, xk, m, v))
            if step == self.steps or len(idx) == 0:
                break
            g = self.estimate_gradient(model, xk, yk, gen)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** (step + 1)), v / (1 - b2 ** (step + 1))
            xk = project(xk + self.lr * m_hat / (v_hat.sqrt() + _ADAM_EPS), x0, eps, "linf")
        record.finish(idx, xk)
        return record.x_adv

    def estimate_gradient(self, model: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        """SPSA estimate of ∇x margin from `samples` antithetic Rademacher pairs (forward only)."""
        n = len(x)
        chunk = max(1, _MAX_FORWARD // (2 * n))
        grad = torch.zeros_like(x)
        for first in range(0, self.samples, chunk):
            k = min(chunk, self.samples - first)
            v = rademacher((n, k, *x.shape[1:]), gen, x)
            probes = torch.cat([x[:, None] + self.delta * v, x[:, None] - self.delta * v], dim=1)
            f = margin(self.logits(model, probes.flatten(0, 1)), y.repeat_interleave(2 * k)).view(n, 2 * k)
            diff = (f[:, :k] - f[:, k:]) / (2 * self.delta)
            grad += (diff.view(n, k, *([1] * (x.dim() - 1))) * v).sum(dim=1)
        return grad / self.samples
