"""Validation of model options shared by the builders: one UserError naming model and option."""
from __future__ import annotations

import math

from ..errors import UserError


def require_positive(model: str, **values: float) -> None:
    """Raise UserError unless every given option is > 0 (and finite)."""
    for name, value in values.items():
        if not (value > 0 and math.isfinite(value)):
            raise UserError(f"model '{model}': option '{name}' must be positive, got {value}")


def require_finite(model: str, **values: float) -> None:
    """Raise UserError unless every given option is a finite number (a step size h may be 0 or negative)."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise UserError(f"model '{model}': option '{name}' must be finite, got {value}")
