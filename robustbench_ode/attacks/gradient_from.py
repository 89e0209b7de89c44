"""Decide with one model, differentiate through another (BPDA; Athalye, Carlini & Wagner 2018).

An adaptive ODE solver may return inaccurate input gradients while its decisions stay right. To
tell a robust model from a masked one, a gradient attack can take its gradients through a
*surrogate* sharing the same weights (fixed-step rk4, or direct back-propagation instead of the
adjoint) while every decision it sees, success checks included, is still the real model's:
`GradientFrom(model, surrogate)(x)` has the value of `model(x)` and the gradient of `surrogate(x)`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class GradientFrom(nn.Module):
    """Forward value from `model`, backward pass through `surrogate` (straight-through)."""

    def __init__(self, model: nn.Module, surrogate: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.surrogate = surrogate

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_grad_enabled():
            return self.model(x)
        with torch.no_grad():
            decided = self.model(x)
        through = self.surrogate(x)
        return decided + (through - through.detach())
