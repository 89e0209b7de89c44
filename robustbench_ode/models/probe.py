"""Probing a model given as code for the ODE solves it runs itself (`intercept.Integrated`): what
it integrates (`integrates`, `probe`) and how much an image's output changes with its batch."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from .intercept import Integrated, Solve


@dataclass
class Probe:
    """What a probe forward found a network integrating, and whether the batch changes outputs."""

    solves: list[Solve] = field(default_factory=list)
    batch_max_diff: float = 0.0  # largest |logit batched - logit alone| over the probed images
    batch_flips: int = 0  # probed images whose decision changes with the batch

    @property
    def found(self) -> bool:
        return bool(self.solves)

    def summary(self) -> str:
        """One line for the terminal and provenance."""
        return "; ".join(dict.fromkeys(s.describe() for s in self.solves))


def probe(model: nn.Module, sample: Tensor) -> Probe:
    """Run `model` (an `Integrated`) on `sample` batched and one image at a time: its solves and
    how much the batch changes its outputs (only measured where a solve is adaptive in torchdiffeq)."""
    integrated = next((m for m in model.modules() if isinstance(m, Integrated)), None)
    if integrated is None:
        return Probe()
    with torch.no_grad():
        batched = model(sample)
        solves = [replace(s) for s in integrated.solves]
        if not integrated.batch_dependent or len(sample) < 2:
            return Probe(solves)
        alone = torch.cat([model(sample[i : i + 1]) for i in range(len(sample))])
    diff = float((batched - alone).abs().max())
    flips = int((batched.argmax(1) != alone.argmax(1)).sum())
    integrated.solves = solves
    return Probe(solves, diff if math.isfinite(diff) else float("inf"), flips)


def integrates(net: nn.Module, sample: Tensor) -> bool:
    """Whether a forward of `net` on `sample` (moved to `net`'s device) calls torchdiffeq or torchode
    itself; False when that forward fails (the caller's own check reports why)."""
    probe_model = Integrated(net)
    param = next(net.parameters(), None)
    try:
        with torch.no_grad():
            probe_model(sample.to(param.device) if param is not None else sample)
    except Exception:  # noqa: BLE001 - the model's own error is reported by the logits check
        return False
    return bool(probe_model.solves)
