"""Training methods as loss strategies: one `train_step` per method; training-input augmentations.

A method sees the model, the optimiser and a batch, and performs one optimisation step, so
adversarial training (PGD-AT, TRADES, YOPO) plugs in without the trainer knowing about attacks.
Methods register in `registry.METHODS` like models and attacks, so a plugin can add one.
Augmentations (`--augment`) live in `augment.py`: they transform each training batch before the
method's step, so they compose with every method.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..registry import METHODS, Entry


class TrainMethod:
    """Base class: `train_step` returns (mean loss, clean-or-training logits) for the batch.

    `supports_ddp`: the step may be given a DistributedDataParallel model (several processes,
    see docs/scale.md): every parameter gradient comes from a backward pass through that model.
    """

    name = "base"
    supports_ddp = True

    def train_step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        raise NotImplementedError


@METHODS.register("standard", "cross-entropy on clean inputs")
class Standard(TrainMethod):
    """Plain empirical risk minimisation with cross-entropy, optionally label-smoothed
    (`--method-arg label_smoothing=0.1`: a faster, better-calibrated short schedule)."""

    name = "standard"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise UserError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def train_step(self, model, optimizer, x, y):
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        loss.backward()
        optimizer.step()
        return loss.item(), logits.detach()


def method_entry(name: str) -> Entry:
    """The registry entry (description, typed options) of a training method."""
    return METHODS.get(name)


def build_method(name: str, options: dict[str, str] | None = None) -> TrainMethod:
    """Instantiate a method by name with `key=value` options coerced to their types."""
    return method_entry(name).build(**(options or {}))
