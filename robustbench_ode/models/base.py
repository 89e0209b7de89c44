"""The contract every registered model follows: pixels in [0, 1] in, logits out.

`ImageClassifier` normalises inside, so attacks and ε live in pixel units. ODE-based bodies
expose `nfe_forward` / `nfe_backward` counters, summed by `nfe_of`; `use_ode_backend` and
`batch_dependent` switch and inspect their solver backend.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..data.base import DatasetInfo
from ..errors import UserError
from ..registry import Entry, options_of, parse_kv


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
    """The same weights integrated by another ODE solver: `model.with_solver(**options)`.

    Options: solver, step_size, adjoint, rtol, atol, max_nfe, backend (see `odenet.ODEClassifier`).
    A model without an ODE solver (ResNets, ...) is a UserError.
    """
    with_solver = getattr(model, "with_solver", None)
    if with_solver is None:
        raise UserError(f"{type(model).__name__} has no ODE solver to swap (solver surrogates need an ODE model)")
    return with_solver(**options)


def parse_solver_spec(text: str) -> dict[str, Any]:
    """'rk4:step_size=0.05:adjoint=false' -> `solver_surrogate` options, validated and typed.

    The first field names a torchdiffeq solver (or torchode's tsit5); the rest are `with_solver`
    options (step_size, adjoint, rtol, atol, max_nfe, backend). A bad solver, option or value is
    a UserError.
    """
    from .ode_block import SOLVER_NAMES, TORCHODE_METHODS
    from .odenet import ODEClassifier

    solver, *pairs = [part.strip() for part in text.split(":")]
    if solver not in SOLVER_NAMES + tuple(TORCHODE_METHODS):
        raise UserError(f"--grad-solver '{text}': unknown solver '{solver}' (torchdiffeq methods: "
                        f"{', '.join(SOLVER_NAMES)}; torchode methods: {', '.join(TORCHODE_METHODS)}); "
                        "example: rk4:step_size=0.05")
    entry = Entry(solver, ODEClassifier.with_solver, "", options_of(ODEClassifier.with_solver), "--grad-solver")
    return {"solver": solver} | entry.parse_options(parse_kv(pairs, "--grad-solver"))


def use_ode_backend(model: nn.Module, backend: str) -> int:
    """Switch, in place, every ODE block of `model` with an adaptive solver to `backend`.

    Meant for evaluation: with torchode no verdict depends on the batch, whatever backend the
    checkpoint was trained with; weights are untouched. Fixed-step blocks are batch-
    independent already and stay as they are. Returns how many (adaptive) blocks now use `backend`,
    0 for a model without one; an unknown backend, or a solver the backend lacks, is a UserError
    and switches nothing.
    """
    from .ode_block import ODEBlock, SolverConfig, is_fixed_step

    SolverConfig(backend=backend)  # validates the name even for a model without ODE blocks
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock) and not is_fixed_step(m.config.solver)]
    configs = [replace(block.config, backend=backend) for block in blocks]  # all valid before any switch
    for block, config in zip(blocks, configs):
        block.config = config
    return len(blocks)


def batch_dependent(model: nn.Module) -> bool:
    """True iff some ODE block of `model` solves adaptively in torchdiffeq.

    torchdiffeq picks one step size per batch, so such a model's outputs depend on the batch.
    """
    from .ode_block import ODEBlock, is_fixed_step

    return any(
        isinstance(m, ODEBlock) and m.config.backend == "torchdiffeq" and not is_fixed_step(m.config.solver)
        for m in model.modules()
    )


def fast_layout(model: nn.Module, channels_last: bool) -> nn.Module:
    """Optionally put a BatchNorm-style conv net in channels_last layout; ODE nets stay as they are.

    Measured on a 2-core AVX2 CPU (fp32, batch 128): channels_last trains a ResNet-20 1.7x and a
    ResNet-50 1.6x faster, but slows the GroupNorm ODE net by ~1.5x. Opt-in because torch 2.14's
    CPU kernels corrupted memory for a width-4 ResNet on 8x8 inputs with one thread. Loading a
    checkpoint applies the layout it was trained with, so logits match bit for bit.
    """
    if channels_last and nfe_of(model) is None:
        model = model.to(memory_format=torch.channels_last)
    return model
