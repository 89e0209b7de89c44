"""Model zoo, registered by name; importing this package registers every family.

Residual families are numerical schemes (`schemes.py`) stepped by one generic `SchemeNet`;
the Neural ODE integrates with torchdiffeq (`odenet.py`).

`ODEBlock` and `SolverConfig` are public building blocks: a user's own network that integrates
with them gets odebench's ODE tooling (solver swaps, NFE counts, the torchode backend), see
docs/usage.md ("Your own model").
"""
from __future__ import annotations

from ..data.base import DatasetInfo
from ..registry import MODELS
from . import families, gains2023, odenet, preact, resnet, yan2020  # noqa: F401  (registration)
from .base import ImageClassifier, nfe_of, solver_surrogate, swap_solver
from .ode_block import ODEBlock, SolverConfig


def build_model(name: str, info: DatasetInfo, **options: object) -> ImageClassifier:
    """Build registered model `name` for `info`; string option values are coerced, unknown ones rejected."""
    return MODELS.get(name).build(info, **options)


__all__ = ["ImageClassifier", "ODEBlock", "SolverConfig", "build_model", "nfe_of", "solver_surrogate", "swap_solver"]
