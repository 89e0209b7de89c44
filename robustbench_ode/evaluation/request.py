"""What a user asks an evaluation to do, checked without torch: attack specs, the ε grid, the job.

The CLI builds these before it imports torch or any model (a bad `--attack`, `--attack-arg` or
`--eps` is answered at once, from the registry's catalogue); the runner and the session use them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError, option
from ..ode_backends import DEFAULT_ODE_BACKEND
from ..parsing import parse_number
from ..registry import ATTACKS

if TYPE_CHECKING:
    from torch import nn

    from ..attacks.base import Attack
    from ..user_model import ModelSource


@dataclass
class AttackSpec:
    """A registered attack name with parsed options, and how a gradient attack takes gradients.

    `grad_solver` ('rk4:step_size=0.05', see `models.odenet.parse_solver_spec`) makes the attack
    differentiate an ODE model through that solver while the model's own solver decides
    (`GradientFrom`); `eot` averages each gradient over that many passes (randomised models).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    grad_solver: str | None = None
    eot: int = 1

    def __post_init__(self) -> None:
        if self.eot < 1:
            raise UserError(f"{option('eot')} must be >= 1, got {self.eot}")
        if (self.grad_solver or self.eot > 1) and not self.uses_gradients:
            raise UserError(f"attack '{self.name}' uses no gradients: {option('grad_solver')} and {option('eot')} "
                            "apply to gradient attacks")
        if self.grad_solver:
            from ..models.odenet import parse_solver_spec

            parse_solver_spec(self.grad_solver)  # fail before any work

    @property
    def uses_gradients(self) -> bool:
        """Whether the attack takes input gradients (from the registry's catalogue: no torch needed)."""
        return bool(ATTACKS.get(self.name).traits["uses_gradients"])

    @property
    def norm(self) -> str:
        """The attack's norm: its `norm` option where it has one, else the one it is built with."""
        return str(self.options.get("norm", ATTACKS.get(self.name).traits["norm"]))

    @classmethod
    def parse(cls, name: str, raw: dict[str, str], grad_solver: str | None = None, eot: int = 1) -> "AttackSpec":
        """The spec of attack `name` with its `key=value` options typed and checked."""
        return cls(name, ATTACKS.get(name).parse_options(raw), grad_solver, eot)

    def build(self) -> Attack:
        """The attack with these options, averaging each gradient over `eot` passes."""
        return ATTACKS.get(self.name).builder(**self.options).with_options(eot=self.eot)

    def crafting_model(self, model: nn.Module) -> nn.Module:
        """The model the attack runs on: `model` itself, or `model` differentiated through `grad_solver`."""
        if not self.grad_solver:
            return model
        from ..attacks.gradient_from import GradientFrom
        from ..models.base import solver_surrogate
        from ..models.odenet import parse_solver_spec

        return GradientFrom(model, solver_surrogate(model, **parse_solver_spec(self.grad_solver)))

    @property
    def args_text(self) -> str:
        """Options as JSON (the result store's key): gradient settings appear only when not default."""
        extra = ({"grad_solver": self.grad_solver} if self.grad_solver else {}) | ({"eot": self.eot} if self.eot > 1 else {})
        return json.dumps(self.options | extra, sort_keys=True)


@dataclass
class AttackJob:
    """What the user asked `odebench attack` to do."""

    checkpoints: list[Path]
    attacks: list[AttackSpec]
    eps: list[float]
    out: Path
    eps_scale: float = 1.0
    n_samples: int = 1000
    batch_size: int = 250
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    source: Path | None = None
    paper: str | None = None
    ode_backend: str = DEFAULT_ODE_BACKEND  # adaptive ODEs: a step size per sample (see evaluation.runner)
    precision: str = "auto"  # of the attacks' gradients (robustbench_ode.precision); decisions are fp32
    extra: dict[str, Any] = field(default_factory=dict)
    model: ModelSource | None = None  # a model given as code (--model-file, --torchscript, --model)
    model_as_source: bool = False  # transfer: craft on `model`, evaluate on the checkpoints
    dataset: str | None = None  # what to evaluate on (default: the checkpoints', else digits)
    independent_eps: bool = False  # attack every radius on all samples, not only a smaller radius's survivors


def parse_eps(values: list[str], scale: float, l2: bool = False) -> list[float]:
    """'0.3', '8/255' or comma lists -> pixel-unit floats (divided by `scale`), validated.

    Radii above 1 make sense only in L2 (`l2=True`: every attack of the job is an L2 attack).
    """
    if scale <= 0:
        raise UserError(f"{option('eps_scale')} must be > 0, got {scale}")
    out = []
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                eps = parse_number(part) / scale
            except (ValueError, ZeroDivisionError):
                raise UserError(f"{option('eps')} '{part}' is not a number (examples: 0.3, 8/255)") from None
            if eps != eps or eps < 0 or eps == float("inf"):
                raise UserError(f"{option('eps')} {part} is not a radius >= 0")
            if eps > 1 and not l2:
                raise UserError(f"{option('eps')} {part} is above 1 in pixel units: only L2 attacks take radii above 1 "
                                f"(use {option('eps_scale')} 255 for a 0-255 grid)")
            out.append(eps)
    if not out:
        raise UserError(f"{option('eps')} needs at least one value")
    return sorted(set(out))
