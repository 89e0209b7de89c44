"""What defines a training run (`TrainConfig`, recorded in the run dir as config.json) and when a
run dir was trained with a given one (`trained_with`). No torch at module level: the CLI reads a
config's fields and builds one before it imports torch."""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UserError, option
from ..registry import DATASETS, METHODS, MODELS

STATE = "train_state.pt"
CONFIG = "config.json"
SCHEDULES = ("auto", "halve", "multistep", "constant", "onecycle")


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in the run dir)."""

    model: str
    dataset: str = "digits"
    model_options: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    download: bool = False
    subset: int | None = None
    test_subset: int | None = None  # class-balanced test images for the final accuracy (None: all)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "auto"  # auto: adam for Neural ODEs (paper, App. A), sgd otherwise (He et al.)
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    schedule: str = "auto"  # auto | halve | multistep | constant | onecycle
    lr_step: int = 50  # epochs between halvings for the 'halve' schedule
    milestones: list[int] = field(default_factory=list)  # 'multistep': epochs after which lr *= gamma ([]: 50%, 75%)
    gamma: float = 0.1  # 'multistep': the factor at each milestone
    snapshots: list[int] = field(default_factory=list)  # epochs after which a checkpoint goes to epoch-NNN/
    # ODE models: the solver training steps integrate with, e.g. rk4:step_size=0.25 ("": the model's own);
    # the model's own solver makes the test accuracy, the checkpoint and every attack
    train_solver: str = ""
    method: str = "standard"
    method_options: dict[str, Any] = field(default_factory=dict)
    augment: str = ""  # training inputs only: "" (none), e.g. crop:4+flip or gaussian:SIGMA (augment.parse_augment)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16: training steps' arithmetic (robustbench_ode.precision)
    channels_last: bool | None = None  # BatchNorm conv nets' layout (models.base.fast_layout); None: with bf16 if BatchNorm
    eval_batch_size: int = 500

    def validate(self) -> None:
        """Range checks on numbers, the precision, the augmentation, the model, dataset and method and
        their options; a violation is a UserError. Imports no torch (the CLI validates first)."""
        from ..precision import PRECISIONS
        from .augment import parse_augment

        if self.epochs < 1:
            raise UserError(f"{option('epochs')} must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"{option('batch_size')} must be >= 1, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"{option('lr')} must be > 0, got {self.lr}")
        if self.optimizer not in ("auto", "sgd", "adam"):
            raise UserError(f"{option('optimizer')} must be auto, sgd or adam, got '{self.optimizer}'")
        if self.schedule not in SCHEDULES:
            raise UserError(f"{option('schedule')} must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        if self.precision not in PRECISIONS:
            raise UserError(f"{option('precision')} must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.lr_step < 1:
            raise UserError(f"{option('lr_step')} must be >= 1, got {self.lr_step}")
        if any(m < 1 for m in self.milestones):
            raise UserError(f"{option('milestones')} must be epochs >= 1, got {self.milestones}")
        if not 0 < self.gamma <= 1:
            raise UserError(f"{option('gamma')} must be in (0, 1], got {self.gamma}")
        if any(not 1 <= e <= self.epochs for e in self.snapshots):
            raise UserError(f"{option('snapshots')} must be epochs from 1 to {option('epochs')} ({self.epochs}), "
                            f"got {self.snapshots}")
        parse_augment(self.augment)
        MODELS.get(self.model).parse_options(self.model_options)  # names and options from the registries'
        DATASETS.get(self.dataset)  # catalogue: no torch yet
        METHODS.get(self.method).parse_options(self.method_options)


# Where and in which arithmetic a run computes, not what it trains: a run resumes (or is reused) on
# another machine, whose `auto` precision may differ; each epoch records the precision it ran in.
# `amp` is the precision field of configs written before --precision existed.
# `snapshots` only says which epochs are also kept as checkpoints: it may change on resume.
_NOT_IDENTITY = ("device", "data_dir", "download", "precision", "channels_last", "amp", "snapshots")


def resumable_part(config: dict[str, Any]) -> dict[str, Any]:
    """The config fields a resume must keep: all but where it runs, where the data lives and the
    arithmetic (the lr schedule depends on epochs, so they must match too). A field missing from
    `config` (written before the field existed) counts as its default, so older runs stay resumable."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    return {k: v for k, v in (defaults | config).items() if k not in _NOT_IDENTITY}


def trained_with(out: Path, cfg: TrainConfig) -> bool:
    """True when run dir `out` was trained with `cfg` (up to where it ran), per its config.json;
    False when that file is missing or unreadable."""
    try:
        stored = json.loads((Path(out) / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    stored.pop("resolved", None)
    return resumable_part(stored) == resumable_part(asdict(cfg))
