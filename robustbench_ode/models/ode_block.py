"""An ODE block: integrate dy/dt = f(t, y) from 0 to t1 with torchdiffeq, counting evaluations.

The solver is any torchdiffeq method (`torchdiffeq._impl.odeint.SOLVERS`): adaptive ones
(dopri5, the paper's choice, Appendix A) use `rtol`/`atol`; fixed-grid ones (euler, rk4, ...)
take `step_size` (0 = one step over [0, t1]). `adjoint=True` back-propagates with
`odeint_adjoint` (Chen et al. 2018) instead of through the solver's operations.

NFE bookkeeping (`nfe_forward`, `nfe_backward`, reset at every forward): forward counts calls
of f during the solve; backward counts, for the adjoint, calls of f while solving the adjoint
ODE and, otherwise, the forward evaluations that autograd actually differentiates through.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.solvers import FixedGridODESolver

from ..errors import UserError

# scipy_solver needs an extra scipy method option and cannot back-propagate; it is not offered.
SOLVER_NAMES: tuple[str, ...] = tuple(sorted(name for name in SOLVERS if name != "scipy_solver"))


def is_fixed_step(solver: str) -> bool:
    """True for torchdiffeq's fixed-grid methods (euler, midpoint, rk4, adams, ...)."""
    return issubclass(SOLVERS[solver], FixedGridODESolver)


@dataclass(frozen=True)
class SolverConfig:
    """How an ODE block integrates; invalid values raise UserError on construction."""

    solver: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    t1: float = 1.0
    step_size: float = 0.0
    adjoint: bool = False
    max_nfe: int = 0

    def __post_init__(self) -> None:
        if self.solver not in SOLVER_NAMES:
            raise UserError(f"unknown ODE solver '{self.solver}' (torchdiffeq methods: {', '.join(SOLVER_NAMES)})")
        for name in ("rtol", "atol", "t1"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise UserError(f"ODE option '{name}' must be positive, got {value}")
        if not (self.step_size >= 0 and math.isfinite(self.step_size)):
            raise UserError(f"ODE option 'step_size' must be >= 0 (0 = one step over [0, t1]), got {self.step_size}")
        if self.step_size > 0 and not is_fixed_step(self.solver):
            fixed = ", ".join(n for n in SOLVER_NAMES if is_fixed_step(n))
            raise UserError(
                f"step_size applies to fixed-step solvers ({fixed}); '{self.solver}' is adaptive "
                "and sets its own steps from rtol/atol"
            )
        if self.max_nfe < 0:
            raise UserError(f"ODE option 'max_nfe' must be >= 0 (0 = no cap), got {self.max_nfe}")

    def options(self) -> dict | None:
        """torchdiffeq's `options` argument: the grid step of a fixed-step solver, if set."""
        return {"step_size": self.step_size} if self.step_size > 0 else None


class ODEBlock(nn.Module):
    """y(0) = input -> y(t1) of dy/dt = func(t, y); counts function evaluations (NFE)."""

    def __init__(self, func: nn.Module, config: SolverConfig) -> None:
        super().__init__()
        self.func = func
        self.config = config
        self.nfe_forward = 0
        self.nfe_backward = 0
        self._in_forward = False

    def forward(self, y0: Tensor) -> Tensor:
        cfg = self.config
        self.nfe_forward = 0
        self.nfe_backward = 0
        t = torch.tensor([0.0, cfg.t1], dtype=y0.dtype, device=y0.device)
        kwargs = dict(rtol=cfg.rtol, atol=cfg.atol, method=cfg.solver, options=cfg.options())
        self._in_forward = True
        try:
            if cfg.adjoint:
                ys = odeint_adjoint(self._dynamics, y0, t, adjoint_params=tuple(self.func.parameters()), **kwargs)
            else:
                ys = odeint(self._dynamics, y0, t, **kwargs)
        finally:
            self._in_forward = False
        return ys[-1]

    def _dynamics(self, t: Tensor, y: Tensor) -> Tensor:
        if self._in_forward:
            self.nfe_forward += 1
            if 0 < self.config.max_nfe < self.nfe_forward:
                cfg = self.config
                raise RuntimeError(
                    f"ODE block exceeded max_nfe={cfg.max_nfe} function evaluations in one forward pass "
                    f"(solver={cfg.solver}, rtol={cfg.rtol}, atol={cfg.atol}, t1={cfg.t1}); raise max_nfe, "
                    "loosen the tolerances or use a fixed-step solver"
                )
        else:
            self.nfe_backward += 1  # only the adjoint solve calls f after the forward pass
        dy = self.func(t, y)
        if not self.config.adjoint and dy.requires_grad:
            dy.register_hook(self._count_backward)
        return dy

    def _count_backward(self, grad: Tensor) -> None:
        self.nfe_backward += 1

    def with_config(self, **changes: object) -> "ODEBlock":
        """A new block over the *same* `func` (shared parameters) with some solver settings changed."""
        return ODEBlock(self.func, replace(self.config, **changes))

    def extra_repr(self) -> str:
        cfg = self.config
        step = f", step_size={cfg.step_size}" if cfg.step_size else ""
        return f"solver={cfg.solver}, t1={cfg.t1}, rtol={cfg.rtol}, atol={cfg.atol}{step}, adjoint={cfg.adjoint}"
