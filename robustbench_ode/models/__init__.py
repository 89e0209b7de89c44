"""Model zoo, registered by name; importing this package registers every family.

Residual families are numerical schemes (`schemes.py`) stepped by one generic `SchemeNet`;
the Neural ODE integrates with torchdiffeq (`odenet.py`).
"""
from __future__ import annotations

from ..data.base import DatasetInfo
from ..registry import MODELS
from . import fractalnet, odenet, polynet, preact, resnet, revnet  # noqa: F401  (registration)
from .base import ImageClassifier, nfe_of, solver_surrogate


def build_model(name: str, info: DatasetInfo, **options: object) -> ImageClassifier:
    """Build registered model `name` for `info`; string option values are coerced, unknown ones rejected."""
    return MODELS.get(name).build(info, **options)


__all__ = ["ImageClassifier", "build_model", "nfe_of", "solver_surrogate"]
