"""Training methods as loss strategies: one `train_step` per method; training-input augmentations.

A method sees the model, the optimiser and a batch, and performs one optimisation step, so
adversarial training (PGD-AT, TRADES, YOPO) plugs in without the trainer knowing about attacks.
Methods register in `registry.METHODS` like models and attacks, so a plugin can add one.
An augmentation (`--augment`, `parse_augment`) transforms each training batch before the
method's step, so it composes with every method: an adversarial method perturbs the augmented
batch (e.g. PGD around the noisy image).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..registry import METHODS, Entry, parse_number


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


@dataclass(frozen=True)
class GaussianNoise:
    """Each training image, with probability `p`, gets sigma * N(0, 1) noise with sigma drawn
    uniformly from `sigmas`; the result is clamped to [0, 1] (Yan et al. 2020, "On Robustness of
    Neural ODEs": their released code, HanshuYAN/TisODE mnist/MiscTools.py and main_ode_gaus.py,
    clamps, and noises half the images with sigma from {50, 75, 100}/255).

    Every draw is on the global CPU generator, then moved to x's device: the trainer saves that
    generator's state after every epoch, so a resumed run draws exactly the same noise.
    """

    sigmas: tuple[float, ...]
    p: float = 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        sigma = torch.tensor(self.sigmas, dtype=x.dtype)[torch.randint(len(self.sigmas), (n,))]
        scale = torch.where(torch.rand(n) < self.p, sigma, 0.0).view(n, *[1] * (x.dim() - 1))
        return (x + (scale * torch.randn(x.shape, dtype=x.dtype)).to(x.device)).clamp(0, 1)


AUGMENT_HELP = ("gaussian:SIGMA[,SIGMA...][:p=P] (SIGMAs numbers or fractions, drawn per image; P the fraction "
                "of images noised, default 1), e.g. gaussian:100/255")


def _number(spec: str, text: str, what: str, high: float = math.inf) -> float:
    """`text` as a finite number in (0, high], else a one-line UserError naming --augment and `what`."""
    try:
        value = parse_number(text)
    except (ValueError, ZeroDivisionError):
        value = math.nan
    if not (0 < value <= high and math.isfinite(value)):
        rule = "a positive number or fraction" + (f" <= {high:g}" if math.isfinite(high) else "")
        raise UserError(f"--augment '{spec}': {what} must be {rule}, got '{text}'; expected {AUGMENT_HELP}")
    return value


def parse_augment(spec: str) -> GaussianNoise | None:
    """'gaussian:100/255' -> GaussianNoise((100/255,)); 'gaussian:50/255,100/255:p=0.5' -> noise on half
    the images with one of two sigmas; '' -> None (no augmentation). Anything else is a one-line
    UserError naming --augment.
    """
    if not spec:
        return None
    kind, *fields = [part.strip() for part in spec.split(":")]
    if kind != "gaussian" or not 1 <= len(fields) <= 2 or not fields[0]:
        raise UserError(f"--augment '{spec}': expected {AUGMENT_HELP}")
    sigmas = tuple(_number(spec, text.strip(), "SIGMA") for text in fields[0].split(","))
    if len(fields) == 1:
        return GaussianNoise(sigmas)
    key, _, value = fields[1].partition("=")
    if key.strip() != "p":
        raise UserError(f"--augment '{spec}': unknown field '{fields[1]}'; expected {AUGMENT_HELP}")
    return GaussianNoise(sigmas, _number(spec, value.strip(), "p", high=1.0))
