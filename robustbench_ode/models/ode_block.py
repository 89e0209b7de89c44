"""An ODE block: integrate dy/dt = f(t, y) from 0 to t1, counting evaluations.

The solver is any torchdiffeq method (`odeint(method=...)`, listed in `SOLVER_NAMES`): adaptive ones
(dopri5, the paper's choice, Appendix A) use `rtol`/`atol`; fixed-grid ones (euler, rk4, ...)
take `step_size` (0 = one step over [0, t1]). `adjoint=True` back-propagates with
`odeint_adjoint` (Chen et al. 2018) instead of through the solver's operations.

Backends (`SolverConfig.backend`, from the table in `robustbench_ode.ode_backends`): torchdiffeq's
adaptive solvers pick ONE step size for the whole batch from one error norm over the batch, so an
image's logits change with its batch-mates. torchode (Lienen & Günnemann 2022) integrates every
sample with its own step size and error norm, so an image's logits do not depend on the batch:
adaptive solves with backend "torchode" run there (dopri5, or tsit5, which only torchode offers).
A fixed-step solver's grid is the same for every sample already, so fixed-step solvers always run
in torchdiffeq, whatever the backend. With torchode, `adjoint=True` uses
`torchode.BacksolveAdjoint`, and, like torchdiffeq, back-propagation treats the chosen step sizes
as constants.

NFE bookkeeping (`nfe_forward`, `nfe_backward`, reset at every forward): forward counts calls
of f during the solve (torchode calls f on the whole batch until its slowest sample is done, so
this is the largest per-sample count); backward counts, for the adjoint, calls of f while
solving the adjoint ODE and, otherwise, the forward evaluations that autograd actually
differentiates through. `nfe_per_sample` holds the evaluations each sample's own solve needed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torchode as to
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint
from torchode.single_step_methods.runge_kutta import ExplicitRungeKutta

from ..errors import UserError
from ..ode_backends import SOLVER_BACKENDS

# torchode's adaptive methods by solver name; tsit5 exists only there.
TORCHODE_METHODS: dict[str, type[ExplicitRungeKutta]] = {
    "dopri5": to.Dopri5,
    "tsit5": to.Tsit5,
}
# torchdiffeq's methods (0.2.5; its table is private), by kind: fixed-grid ones step on a grid
# (`step_size`), adaptive ones pick their steps from rtol/atol. tests/test_models.py checks these
# against torchdiffeq's own table, so an upgrade that adds or changes a method fails a test.
# scipy_solver needs an extra scipy method option and cannot back-propagate; it is not offered.
FIXED_STEP_SOLVERS: tuple[str, ...] = (
    "euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams",
)
ADAPTIVE_SOLVERS: tuple[str, ...] = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
SOLVER_NAMES: tuple[str, ...] = tuple(sorted(FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS))


def is_fixed_step(solver: str) -> bool:
    """True for torchdiffeq's fixed-grid methods (euler, midpoint, rk4, adams, ...)."""
    return solver in FIXED_STEP_SOLVERS


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
    backend: str = "torchdiffeq"

    def __post_init__(self) -> None:
        if self.backend not in SOLVER_BACKENDS:
            raise UserError(f"unknown ODE backend '{self.backend}' (choose {' or '.join(SOLVER_BACKENDS)})")
        if self.solver not in SOLVER_NAMES + tuple(TORCHODE_METHODS):
            raise UserError(f"unknown ODE solver '{self.solver}' (torchdiffeq methods: {', '.join(SOLVER_NAMES)}; "
                            f"torchode methods: {', '.join(TORCHODE_METHODS)})")
        if self.solver not in SOLVER_NAMES and self.backend != "torchode":
            raise UserError(f"ODE solver '{self.solver}' exists only in torchode: set backend=torchode")
        if self.backend == "torchode" and not is_fixed_step(self.solver) and self.solver not in TORCHODE_METHODS:
            raise UserError(f"backend torchode has no adaptive solver '{self.solver}' (it offers "
                            f"{', '.join(TORCHODE_METHODS)}); use backend=torchdiffeq or another solver")
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

    @property
    def uses_torchode(self) -> bool:
        """Whether the solve runs in torchode: backend torchode and an adaptive solver."""
        return self.backend == "torchode" and not is_fixed_step(self.solver)

    def options(self) -> dict | None:
        """torchdiffeq's `options` argument: the grid step of a fixed-step solver, if set."""
        return {"step_size": self.step_size} if self.step_size > 0 else None


class _FlatDynamics(nn.Module):
    """The block's counted f on the flat (batch, features) states torchode integrates.

    A module (holding the block, hence f's parameters) because torchode's BacksolveAdjoint
    calls it functionally with those parameters; under its per-sample vmap a state is (features,).
    The derivative is cast to the state's dtype so that the solve stays in y0's dtype (autocast).
    """

    def __init__(self, block: "ODEBlock", shape: torch.Size) -> None:
        super().__init__()
        self.block = block
        self.shape = shape

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.block._dynamics(t, y.reshape(-1, *self.shape)).reshape(y.shape).to(y.dtype)


class ODEBlock(nn.Module):
    """y(0) = input -> y(t1) of dy/dt = func(t, y); counts function evaluations (NFE).

    A public building block (`from robustbench_ode.models import ODEBlock, SolverConfig`): any
    network that integrates with it, registered or a user's own (docs/usage.md, "Your own
    model"), gets odebench's ODE tooling: `--grad-solver`, NFE counts and `--ode-backend`.
    `func(t, y)` must keep y's shape; t is a 0-d tensor under torchdiffeq and one time per sample,
    shape (batch,), under torchode, so a field that uses t must handle both (`odenet.ConcatConv2d`).
    """

    def __init__(self, func: nn.Module, config: SolverConfig) -> None:
        super().__init__()
        self.func = func
        self.config = config
        self.nfe_forward = 0
        self.nfe_backward = 0
        self.nfe_per_sample: Tensor | None = None
        self._in_forward = False

    def forward(self, y0: Tensor) -> Tensor:
        cfg = self.config
        self.nfe_forward = 0
        self.nfe_backward = 0
        self._in_forward = True
        try:
            if cfg.uses_torchode:
                return self._solve_torchode(y0)
            y1 = self._solve_torchdiffeq(y0)
            self.nfe_per_sample = torch.full((y0.shape[0],), self.nfe_forward, dtype=torch.long)
            return y1
        finally:
            self._in_forward = False

    def _solve_torchdiffeq(self, y0: Tensor) -> Tensor:
        cfg = self.config
        t = torch.tensor([0.0, cfg.t1], dtype=y0.dtype, device=y0.device)
        kwargs = dict(rtol=cfg.rtol, atol=cfg.atol, method=cfg.solver, options=cfg.options())
        if cfg.adjoint:
            ys = odeint_adjoint(self._dynamics, y0, t, adjoint_params=tuple(self.func.parameters()), **kwargs)
        else:
            ys = odeint(self._dynamics, y0, t, **kwargs)
        return ys[-1]

    def _solve_torchode(self, y0: Tensor) -> Tensor:
        """Integrate every sample with its own step size; raise RuntimeError if any solve fails."""
        cfg = self.config
        batch = y0.shape[0]
        term = to.ODETerm(_FlatDynamics(self, y0.shape[1:]))
        method = TORCHODE_METHODS[cfg.solver](term=term)
        controller = to.IntegralController(atol=cfg.atol, rtol=cfg.rtol, term=term).to(y0.device)
        t_eval = torch.tensor([0.0, cfg.t1], dtype=y0.dtype, device=y0.device).expand(batch, 2)
        problem = to.InitialValueProblem(y0.reshape(batch, -1), t_eval=t_eval)
        # Evaluations of one sample: 2 to pick the first step, then per attempted step every
        # stage but a reused (FSAL) first one. torchode flags a sample once its step count
        # reaches max_steps, so max_steps is one more than the steps max_nfe pays for.
        per_step = method.tableau.n_stages - int(method.tableau.fsal)
        max_steps = (cfg.max_nfe - 2) // per_step + 1 if cfg.max_nfe > 0 else None
        if cfg.adjoint:
            solver = to.BacksolveAdjoint(term, method, controller)
            solver.forward_adjoint.max_steps = max_steps
        else:
            solver = to.AutoDiffAdjoint(method, controller, max_steps=max_steps,
                                        backprop_through_step_size_control=False)
        solution = solver.solve(problem)
        self.nfe_per_sample = (2 + per_step * solution.stats["n_steps"]).cpu()
        failed = solution.status != to.Status.SUCCESS.value
        if failed.any():
            status = to.Status(int(solution.status[failed][0])).name
            budget = f"max_nfe={cfg.max_nfe} function evaluations" if cfg.max_nfe else "no NFE cap"
            raise RuntimeError(
                f"ODE block: torchode's solve failed for {int(failed.sum())} of {batch} samples ({status}; "
                f"{budget}; solver={cfg.solver}, rtol={cfg.rtol}, atol={cfg.atol}, t1={cfg.t1}); raise max_nfe, "
                "loosen the tolerances or use a fixed-step solver"
            )
        return solution.ys[:, -1].view_as(y0)

    def _dynamics(self, t: Tensor, y: Tensor) -> Tensor:
        cfg = self.config
        if self._in_forward:
            self.nfe_forward += 1
            if 0 < cfg.max_nfe < self.nfe_forward and not cfg.uses_torchode:  # torchode caps each sample itself
                raise RuntimeError(
                    f"ODE block exceeded max_nfe={cfg.max_nfe} function evaluations in one forward pass "
                    f"(solver={cfg.solver}, rtol={cfg.rtol}, atol={cfg.atol}, t1={cfg.t1}); raise max_nfe, "
                    "loosen the tolerances or use a fixed-step solver"
                )
        else:
            self.nfe_backward += 1  # only the adjoint solve calls f after the forward pass
        dy = self.func(t, y)
        if not cfg.adjoint and dy.requires_grad:
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
        return (f"solver={cfg.solver}, t1={cfg.t1}, rtol={cfg.rtol}, atol={cfg.atol}{step}, adjoint={cfg.adjoint}, "
                f"backend={cfg.backend}")
