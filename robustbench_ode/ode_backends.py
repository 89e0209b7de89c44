"""The ODE backends: which library integrates a model's adaptive ODE blocks. One table for the
blocks (`models.ode_block.SolverConfig.backend`), the `ode_backend` setting of every evaluation
(`odebench attack`, `audit`, `converge`, `claims check`, the Python API) and the command line's
help. It imports no torch, so the command line can read it without slowing its start.

torchdiffeq's adaptive solvers pick one step size for a whole batch, so an image's logits can
depend on its batch-mates; torchode integrates every sample with its own step size. Evaluations
therefore switch adaptive blocks to torchode unless asked otherwise (see `models.ode_block`).
"""
from __future__ import annotations

from .errors import UserError, option

AS_TRAINED = "model"  # an evaluation that leaves each block on the backend it was built with
# What an evaluation may ask for, with what it means; the first is the default.
ODE_BACKENDS: dict[str, str] = {
    "torchode": "a step size per sample, batch-independent decisions",
    "torchdiffeq": "one step size per batch",
    AS_TRAINED: "as trained",
}
DEFAULT_ODE_BACKEND = next(iter(ODE_BACKENDS))
# The libraries an ODE block integrates with (`SolverConfig.backend`).
SOLVER_BACKENDS: tuple[str, ...] = tuple(name for name in ODE_BACKENDS if name != AS_TRAINED)


def check_ode_backend(name: str) -> str:
    """`name` if an evaluation may ask for it, else a UserError naming the `ode_backend` setting."""
    if name not in ODE_BACKENDS:
        raise UserError(f"{option('ode_backend')} must be one of {', '.join(ODE_BACKENDS)}, got '{name}'")
    return name
