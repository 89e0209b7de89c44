"""Experiments as data: which models to train, which attacks at which ε, on which dataset.

A `Part` is one accuracy-vs-ε table (one dataset); an `Experiment` is a paper table or figure
made of parts. Models are named by a key so experiments share checkpoints (E2, E3 and E4 attack
the same ResNet and Neural ODE).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..evaluation.request import AttackSpec
from ..training.config import TrainConfig


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint an experiment needs: its key (run dir name) and how to train it."""

    key: str
    train: TrainConfig


@dataclass
class Part:
    """One table: attack these models with these attacks over this ε grid."""

    dataset: str
    models: list[ModelSpec]
    attacks: list[AttackSpec]
    eps: list[float]
    eps_scale: float = 1.0
    n_samples: int = 1000
    source: ModelSpec | None = None  # transfer: craft on this model, evaluate on `models`

    @property
    def name(self) -> str:
        return self.dataset


@dataclass
class Experiment:
    """A paper experiment at one preset, with what the preset changed from the paper."""

    name: str
    title: str
    parts: list[Part]
    preset: str
    changes: list[str] = field(default_factory=list)
