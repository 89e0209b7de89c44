"""The contract every registered model follows: pixels in [0, 1] in, logits out.

`ImageClassifier` normalises inside, so attacks and ε live in pixel units. ODE-based bodies
expose `nfe_forward` / `nfe_backward` counters, summed by `nfe_of`; `use_ode_backend` and
`batch_dependent` switch and inspect their solver backend.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from ..data.base import DatasetInfo
from ..errors import UserError
from .intercept import Integrated
from .ode_block import ODEBlock, SolverConfig, is_fixed_step


class ImageClassifier(nn.Module):
    """Wrap a body network with per-channel normalisation of [0, 1] pixel inputs."""

    def __init__(self, info: DatasetInfo, body: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(info.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(info.std).view(1, -1, 1, 1), persistent=False)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


def nfe_of(model: nn.Module) -> dict[str, int] | None:
    """Function evaluations of the last forward and backward pass, summed over ODE blocks.

    None for a model without ODE blocks.
    """
    blocks = [m for m in model.modules() if hasattr(m, "nfe_forward")]
    if not blocks:
        return None
    return {
        "nfe_forward": int(sum(m.nfe_forward for m in blocks)),
        "nfe_backward": int(sum(m.nfe_backward for m in blocks)),
    }


def solver_surrogate(model: nn.Module, **options: object) -> nn.Module:
    """The same weights integrated by another ODE solver: `model.with_solver(**options)`, or
    `swap_solver(model, **options)` for any other module that contains `ODEBlock`s.

    Options: solver, step_size, adjoint, rtol, atol, max_nfe, backend (see `odenet.ODEClassifier`).
    A model without an ODE solver (ResNets, ...) is a UserError.
    """
    with_solver = getattr(model, "with_solver", None)
    if with_solver is not None:
        return with_solver(**options)
    if has_ode_solver(model):
        return swap_solver(model, **options)  # type: ignore[arg-type]
    raise UserError(f"{type(model).__name__} has no ODE solver to swap (solver surrogates need an ODE model)")


def has_ode_solver(model: nn.Module) -> bool:
    """Whether `solver_surrogate` can swap `model`'s solver: it has `with_solver`, an `ODEBlock`, or
    calls torchdiffeq/torchode itself (`intercept.Integrated`)."""
    return getattr(model, "with_solver", None) is not None or \
        any(isinstance(m, (ODEBlock, Integrated)) for m in model.modules())


def first_solver(model: nn.Module) -> tuple[str, float, bool] | None:
    """(solver, integration length t1, adjoint) of `model`'s first ODE solve; None without one.

    For a model that calls the ODE library itself, what its last forward pass integrated."""
    for m in model.modules():
        config = getattr(m, "config", None) if hasattr(m, "nfe_forward") else None  # ODEBlock and its kin
        if config is not None:
            return config.solver, config.t1, config.adjoint
        if isinstance(m, Integrated) and m.solves:
            return m.solves[0].method, m.t1, m.solves[0].adjoint
    return None


def swap_solver(
    model: nn.Module, solver: str, step_size: float = 0.0, adjoint: bool | None = None, rtol: float | None = None,
    atol: float | None = None, max_nfe: int | None = None, backend: str | None = None,
) -> nn.Module:
    """A copy of any `model` that shares every parameter but whose `ODEBlock`s integrate with
    `solver` (None keeps each block's own value), as `ODEClassifier.with_solver` does for the
    registered Neural ODEs. Only the modules on the path to an ODE block are (shallowly) copied, so
    a user's own network needs no `with_solver` of its own; `model` itself is not changed.
    """
    def swapped(block: ODEBlock) -> ODEBlock:
        cfg = block.config
        new = block.with_config(
            solver=solver, step_size=step_size, adjoint=cfg.adjoint if adjoint is None else adjoint,
            rtol=cfg.rtol if rtol is None else rtol, atol=cfg.atol if atol is None else atol,
            max_nfe=cfg.max_nfe if max_nfe is None else max_nfe, backend=cfg.backend if backend is None else backend,
        )
        new.training = block.training
        return new

    def rebuild(module: nn.Module) -> nn.Module:
        if isinstance(module, ODEBlock):
            return swapped(module)
        if isinstance(module, Integrated):
            return module.with_solver(solver, step_size, adjoint, rtol, atol)
        children = {name: rebuild(child) for name, child in module._modules.items() if child is not None}
        if all(child is module._modules[name] for name, child in children.items()):
            return module
        clone = copy.copy(module)
        clone._modules = {**module._modules, **children}
        return clone

    return rebuild(model)


def use_ode_backend(model: nn.Module, backend: str) -> int:
    """Switch, in place, every ODE block of `model` with an adaptive solver to `backend`.

    Meant for evaluation: with torchode no verdict depends on the batch, whatever backend the
    checkpoint was trained with; weights are untouched. Fixed-step blocks are batch-
    independent already and stay as they are. Returns how many (adaptive) blocks now use `backend`,
    0 for a model without one; an unknown backend, or a solver the backend lacks, is a UserError
    and switches nothing.
    """
    SolverConfig(backend=backend)  # validates the name even for a model without ODE blocks
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock) and not is_fixed_step(m.config.solver)]
    configs = [replace(block.config, backend=backend) for block in blocks]  # all valid before any switch
    for block, config in zip(blocks, configs):
        block.config = config
    return len(blocks)


def batch_dependent(model: nn.Module) -> bool:
    """True iff some ODE block of `model`, or a solve it runs itself, is adaptive in torchdiffeq.

    torchdiffeq picks one step size per batch, so such a model's outputs depend on the batch.
    """
    return any(
        (isinstance(m, ODEBlock) and m.config.backend == "torchdiffeq" and not is_fixed_step(m.config.solver))
        or (isinstance(m, Integrated) and m.batch_dependent)
        for m in model.modules()
    )


def fast_layout(model: nn.Module, channels_last: bool) -> nn.Module:
    """Optionally put a BatchNorm-style conv net in channels_last layout; ODE nets stay as they are.

    Measured on a 2-core AVX2 CPU (fp32, batch 128): channels_last trains a ResNet-20 1.7x and a
    ResNet-50 1.6x faster, but slows the GroupNorm ODE net by ~1.5x. The trainer turns it on with
    bf16 on a CPU; in fp32 it is opt-in (torch 2.14's CPU kernels once corrupted memory for a
    width-4 ResNet on 8x8 inputs with one thread; see docs/training.md). Loading a
    checkpoint applies the layout it was trained with, so logits match bit for bit.
    """
    if channels_last and nfe_of(model) is None:
        model = model.to(memory_format=torch.channels_last)
    return model


class GradientsIn(nn.Module):
    """`model` evaluated under bf16 autocast with fp32 logits out: what an attack differentiates
    (`Precision.differentiated`). The wrapped model is shared, not copied; decisions are made by
    calling `model` itself, in fp32."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x).float()
