"""Training methods as loss strategies: one `train_step` per method.

A method sees the model, the optimiser and a batch, and performs one optimisation step, so
adversarial training (PGD-AT, TRADES, YOPO) plugs in without the trainer knowing about attacks.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..registry import Entry, options_of


class TrainMethod:
    """Base class: `train_step` returns (mean loss, clean-or-training logits) for the batch."""

    name = "base"

    def train_step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        raise NotImplementedError


class Standard(TrainMethod):
    """Plain empirical risk minimisation with cross-entropy."""

    name = "standard"

    def train_step(self, model, optimizer, x, y):
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        return loss.item(), logits.detach()


METHODS: dict[str, tuple[Callable[..., TrainMethod], str]] = {
    "standard": (Standard, "cross-entropy on clean inputs"),
}


def register_method(name: str, description: str) -> Callable[[type], type]:
    """Decorator adding a training method class to METHODS."""

    def deco(cls: type) -> type:
        METHODS[name] = (cls, description)
        return cls

    return deco


def method_entry(name: str) -> Entry:
    """The registry-style entry (description, typed options) of a training method."""
    if name not in METHODS:
        raise UserError(f"unknown training method '{name}' (known: {', '.join(sorted(METHODS))})")
    cls, desc = METHODS[name]
    return Entry(name, cls, desc, options_of(cls), "training method")


def build_method(name: str, options: dict[str, str] | None = None) -> TrainMethod:
    """Instantiate a method by name with `key=value` options coerced to their types."""
    return method_entry(name).build(**(options or {}))
