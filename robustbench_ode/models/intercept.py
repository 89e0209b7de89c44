"""Neural ODEs that call torchdiffeq or torchode themselves, seen from outside.

A user's model file rarely uses odebench's `ODEBlock`: it calls `torchdiffeq.odeint`,
`odeint_adjoint` or a torchode solver inside its forward. `Integrated` wraps such a network and,
during each of its forward passes, intercepts those calls (wrapping the libraries' entry points for
the duration of the pass, never editing them), so that odebench knows what the model integrates
(`Solve`: library, method, adaptive or fixed, tolerances, NFE), counts function evaluations like an
`ODEBlock` (`nfe_forward`, `nfe_backward`), judges torchdiffeq's adaptive solves batch-dependent
(one step size for the whole batch: verdicts are then made one image at a time), and can swap the
solver for gradients (`with_solver`: `--grad-solver` and the audit's surrogate check) while the
user's own solver decides.

What is intercepted (torchdiffeq 0.2.x, torchode 1.x): torchdiffeq's input normalisation, which
every `odeint` call runs whichever name the model imported it under, and the autograd function
`odeint_adjoint` hands its solve to; torchode's `AutoDiffAdjoint.solve` and the backsolve adjoints'
`solve`. A swapped torchode solve runs in torchdiffeq over the same vector field (`term.f`), which
then sees one time per sample, as torchode gives it. Probing a network for its solves is
`models.probe`.
"""
from __future__ import annotations

import contextlib
import importlib
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from ..errors import UserError
from .ode_block import is_fixed_step

_ODEINT = importlib.import_module("torchdiffeq._impl.odeint")
_ADJOINT = importlib.import_module("torchdiffeq._impl.adjoint")


@dataclass
class Solve:
    """One ODE solve a model ran during a forward pass."""

    library: str  # torchdiffeq | torchode
    call: str  # odeint | odeint_adjoint | AutoDiffAdjoint | BacksolveAdjoint | JointBacksolveAdjoint
    method: str
    adaptive: bool
    rtol: float | None
    atol: float | None
    t0: float
    t1: float
    nfe: int = 0
    step_size: float | None = None

    @property
    def adjoint(self) -> bool:
        return "adjoint" in self.call.lower()

    def describe(self) -> str:
        """'torchdiffeq.odeint (dopri5, adaptive, rtol 0.001, atol 0.001, NFE 26)'."""
        kind = (f"adaptive, rtol {self.rtol:g}, atol {self.atol:g}" if self.adaptive
                else "fixed step" + (f" {self.step_size:g}" if self.step_size else ""))
        return f"{self.library}.{self.call} ({self.method}, {kind}, t {self.t0:g}→{self.t1:g}, NFE {self.nfe})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SolverSwap:
    """What a surrogate changes in every intercepted solve (None keeps the model's own value)."""

    solver: str
    step_size: float = 0.0
    adjoint: bool | None = None
    rtol: float | None = None
    atol: float | None = None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, Tensor):
        return float(value.detach().reshape(-1)[0]) if value.numel() else None
    return float(value)


class _Counted:
    """A vector field that counts its calls for its `Integrated` owner (forward while the owner's
    forward runs, backward otherwise: adjoint solves), and, when differentiated through directly,
    the evaluations autograd back-propagates through."""

    def __init__(self, f: Callable[..., Any], owner: "Integrated", solve: Solve) -> None:
        self.f, self.owner, self.solve = f, owner, solve

    def __call__(self, t: Any, y: Any, *args: Any, **kwargs: Any) -> Any:
        owner = self.owner
        if owner._in_forward:
            owner.nfe_forward += 1
            self.solve.nfe += 1
        else:
            owner.nfe_backward += 1
        dy = self.f(t, y, *args, **kwargs)
        if owner._in_forward and isinstance(dy, Tensor) and dy.requires_grad and not self.solve.adjoint:
            dy.register_hook(owner._count_backward)
        return dy

    def __getattr__(self, name: str) -> Any:  # torchdiffeq reads callback attributes off the field
        return getattr(self.f, name)


class _Interception:
    """The patches one forward pass of an `Integrated` model runs under (see the module docstring)."""

    def __init__(self, owner: "Integrated") -> None:
        self.owner = owner
        self.depth = 0  # torchode's backsolve adjoint calls AutoDiffAdjoint.solve inside its own solve

    # torchdiffeq ---------------------------------------------------------------------------
    def check_inputs(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def checked(func, y0, t, rtol, atol, method, options, event_fn, solvers):  # noqa: ANN001, ANN202
            counted = isinstance(func, _Counted)
            swap = self.owner.swap
            if swap is not None and not counted:
                method, options, rtol, atol = _swapped(swap, method, options, rtol, atol)
            out = list(original(func, y0, t, rtol, atol, method, options, event_fn, solvers))
            if counted:  # the solve inside odeint_adjoint, recorded by `adjoint_apply`
                return tuple(out)
            solve = _torchdiffeq_solve("odeint", out[6], out[7], rtol, atol, t)
            self.owner._record(solve)
            out[1] = _Counted(out[1], self.owner, solve)
            return tuple(out)
        return checked

    def adjoint_method(self, original: Any) -> Any:
        interception = self

        class AdjointMethod:
            @staticmethod
            def apply(shapes, func, y0, t, rtol, atol, method, options, event_fn, adjoint_rtol,  # noqa: ANN001, ANN205
                      adjoint_atol, adjoint_method, adjoint_options, t_requires_grad, *params):
                swap = interception.owner.swap
                if swap is not None:
                    method, options, rtol, atol = _swapped(swap, method, options, rtol, atol)
                    adjoint_method, adjoint_options, adjoint_rtol, adjoint_atol = _swapped(
                        swap, adjoint_method, adjoint_options, adjoint_rtol, adjoint_atol)
                call = "odeint_adjoint" if swap is None or swap.adjoint is not False else "odeint"
                solve = _torchdiffeq_solve(call, method, options, rtol, atol, t)
                interception.owner._record(solve)
                counted = _Counted(func, interception.owner, solve)
                if call == "odeint":  # the surrogate differentiates through the solver's operations
                    return _ODEINT.odeint(counted, y0, t, rtol=rtol, atol=atol, method=method, options=options,
                                          event_fn=event_fn)
                return original.apply(shapes, counted, y0, t, rtol, atol, method, options, event_fn, adjoint_rtol,
                                      adjoint_atol, adjoint_method, adjoint_options, t_requires_grad, *params)
        return AdjointMethod

    # torchode ------------------------------------------------------------------------------
    def torchode_solve(self, cls: type, original: Callable[..., Any]) -> Callable[..., Any]:
        interception = self

        def solve(solver, problem, term=None, *args, **kwargs):  # noqa: ANN001, ANN202
            if interception.depth:
                return original(solver, problem, term, *args, **kwargs)
            interception.depth += 1
            try:
                return interception._torchode(cls.__name__, original, solver, problem, term, *args, **kwargs)
            finally:
                interception.depth -= 1
        return solve

    def _torchode(self, call: str, original: Callable[..., Any], solver: Any, problem: Any, term: Any,
                  *args: Any, **kwargs: Any) -> Any:
        inner = getattr(solver, "forward_adjoint", solver)  # backsolve adjoints hold an AutoDiffAdjoint
        step_method, controller = inner.step_method, inner.step_size_controller
        term = term or getattr(solver, "term", None) or getattr(step_method, "term", None)
        fixed = not hasattr(controller, "atol")
        t0, t1 = _number(problem.t_start.min()), _number(problem.t_end.max())
        swap = self.owner.swap
        if swap is not None:
            solve = _torchdiffeq_solve("odeint", *_swapped(swap, swap.solver, None, swap.rtol or 1e-3,
                                                           swap.atol or 1e-3), torch.tensor([t0, t1]))
            self.owner._record(solve)
            return _torchode_in_torchdiffeq(term, problem, swap, self.owner, solve)
        solve = Solve("torchode", call, type(step_method).__name__.lower(), not fixed,
                      None if fixed else _number(controller.rtol), None if fixed else _number(controller.atol), t0, t1)
        self.owner._record(solve)
        solution = original(solver, problem, term, *args, **kwargs)
        nfe = solution.stats.get("n_f_evals")
        if isinstance(nfe, Tensor):
            solve.nfe = int(nfe.max())
            self.owner.nfe_forward += solve.nfe
        return solution

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        import torchode as to

        patches: list[tuple[Any, str, Any]] = [
            (_ODEINT, "_check_inputs", self.check_inputs(_ODEINT._check_inputs)),
            (_ADJOINT, "OdeintAdjointMethod", self.adjoint_method(_ADJOINT.OdeintAdjointMethod)),
        ]
        for name in ("AutoDiffAdjoint", "BacksolveAdjoint", "JointBacksolveAdjoint"):
            cls = getattr(to, name, None)
            if cls is not None and "solve" in vars(cls):
                patches.append((cls, "solve", self.torchode_solve(cls, vars(cls)["solve"])))
        saved = [(obj, name, vars(obj)[name] if isinstance(obj, type) else getattr(obj, name))
                 for obj, name, _ in patches]
        for obj, name, new in patches:
            setattr(obj, name, new)
        try:
            yield
        finally:
            for obj, name, old in saved:
                setattr(obj, name, old)


def _swapped(swap: SolverSwap, method: Any, options: Any, rtol: Any, atol: Any) -> tuple[Any, Any, Any, Any]:
    """torchdiffeq's (method, options, rtol, atol) with a surrogate's changes."""
    options = {k: v for k, v in (options or {}).items() if k not in ("step_size", "grid_points", "first_step")}
    if swap.step_size > 0:
        options["step_size"] = swap.step_size
    return (swap.solver, options or None, rtol if swap.rtol is None else swap.rtol,
            atol if swap.atol is None else swap.atol)


def _torchdiffeq_solve(call: str, method: str | None, options: dict | None, rtol: Any, atol: Any, t: Tensor) -> Solve:
    method = method or "dopri5"
    fixed = is_fixed_step(method)
    step = (options or {}).get("step_size")
    return Solve("torchdiffeq", call, method, not fixed, None if fixed else _number(rtol),
                 None if fixed else _number(atol), _number(t[0]), _number(t[-1]), 0, _number(step))


def _torchode_in_torchdiffeq(term: Any, problem: Any, swap: SolverSwap, owner: "Integrated", solve: Solve) -> Any:
    """A torchode problem solved by torchdiffeq with the surrogate's solver (every sample on the
    same time grid, as odebench's image models have), returned as a torchode `Solution`."""
    import torchode as to

    t_eval = problem.t_eval if problem.t_eval is not None else torch.stack([problem.t_start, problem.t_end], dim=1)
    if not bool((t_eval == t_eval[:1]).all()):
        raise RuntimeError("a solver surrogate of a torchode model needs the same evaluation times for every sample")
    batch = t_eval.shape[0]
    method, options, rtol, atol = _swapped(swap, swap.solver, None, 1e-3 if swap.rtol is None else swap.rtol,
                                           1e-3 if swap.atol is None else swap.atol)
    f = _Counted(lambda t, y: term.f(t.expand(batch), y), owner, solve)
    ys = _ODEINT.odeint(f, problem.y0, t_eval[0], rtol=rtol, atol=atol, method=method, options=options)
    stats = {"n_f_evals": torch.full((batch,), solve.nfe, dtype=torch.long)}
    return to.Solution(ts=t_eval, ys=ys.transpose(0, 1), stats=stats,
                       status=torch.zeros(batch, dtype=torch.long, device=ys.device))


class Integrated(nn.Module):
    """A network that integrates ODEs with torchdiffeq or torchode itself, made visible to odebench.

    `solves` are the solves its last forward ran; `nfe_forward` / `nfe_backward` count as an
    `ODEBlock`'s do; `batch_dependent` is true when a solve is adaptive in torchdiffeq;
    `with_solver` returns a same-weight copy whose every solve uses another solver.
    """

    def __init__(self, net: nn.Module, swap: SolverSwap | None = None) -> None:
        super().__init__()
        self.net = net
        self.swap = swap
        self.solves: list[Solve] = []
        self.nfe_forward = 0
        self.nfe_backward = 0
        self._in_forward = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.solves, self.nfe_forward, self.nfe_backward = [], 0, 0
        self._in_forward = True
        try:
            with _Interception(self).active():
                return self.net(*args, **kwargs)
        finally:
            self._in_forward = False

    def _record(self, solve: Solve) -> None:
        if self._in_forward:
            self.solves.append(solve)

    def _count_backward(self, grad: Tensor) -> None:
        self.nfe_backward += 1

    @property
    def batch_dependent(self) -> bool:
        """Whether an image's output can change with its batch-mates: torchdiffeq picks one
        adaptive step size per batch (torchode and fixed grids do not)."""
        return any(s.library == "torchdiffeq" and s.adaptive for s in self.solves)

    @property
    def t1(self) -> float:
        """The integration length of its first solve (1.0 before any)."""
        return abs(self.solves[0].t1 - self.solves[0].t0) if self.solves else 1.0

    def with_solver(self, solver: str, step_size: float = 0.0, adjoint: bool | None = None, rtol: float | None = None,
                    atol: float | None = None, max_nfe: int | None = None, backend: str | None = None) -> "Integrated":
        """A copy over the same `net` (shared weights) whose every solve integrates with `solver`
        (`step_size` for a fixed grid; `adjoint=False` differentiates through the solver's
        operations instead of `odeint_adjoint`). `max_nfe` and `backend` are `ODEBlock` options
        with no meaning here and must be left unset (0 / None / the default)."""
        if backend not in (None, "torchdiffeq") or (max_nfe or 0) > 0:
            raise UserError("a model that calls the ODE library itself takes only solver, step_size, adjoint, "
                             "rtol and atol as surrogate options")
        copy = Integrated(self.net, SolverSwap(solver, step_size, adjoint, rtol, atol))
        copy.solves = [replace(s) for s in self.solves]
        copy.training = self.training
        return copy

    def extra_repr(self) -> str:
        return "; ".join(s.describe() for s in self.solves) or "no solve seen yet"
