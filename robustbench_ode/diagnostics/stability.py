"""Theorem 3.1 of the paper measured instead of assumed: how a perturbation of the input grows
along depth.

For y_{n+1} = y_n + h f(y_n) started from y_0 and z_0 = y_0 + ε, the theorem bounds
max_n |z_n − y_n| ≤ e^{(b−t0)K} |ε| with K the Lipschitz constant of f. Here the hidden state is
read after the stem and after every residual block of a `SchemeNet` (forward hooks, so the
models are untouched), or on a time grid of a Neural ODE's block (torchdiffeq, the model's own
solver); the amplification |z_n − y_n| / |z_0 − y_0| is reported per depth index together with
an empirical Lipschitz ratio |f(z_n) − f(y_n)| / |z_n − y_n| of the field that acts there.
|·| is the per-sample RMS over a state's entries (the L2 norm whenever shapes agree).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from ..attacks.base import eval_mode
from ..errors import UserError, option
from ..models.ode_block import ODEBlock
from ..models.scheme_net import ProjectionBlock, SchemeBlock, SchemeNet
from .gradients import input_gradients

KINDS = ("random", "adversarial")
Field = Callable[[Tensor], Tensor]


@dataclass
class Depth:
    """A network seen as a discrete dynamical system.

    `states(x)` gives the hidden states z_0 ... z_N (z_0 is what the residual part receives);
    `times` their positions t_0 ... t_N (cumulative h, or ODE time); `fields[n]` the vector field
    acting on state n (N of them).
    """

    states: Callable[[Tensor], list[Tensor]]
    times: list[float]
    fields: list[Field]


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted input is captured."""


def _block_field(block: nn.Module) -> Field:
    """The f of a block: its one residual function, RevNet's coupled (F, G) field, or the field of
    a shape-changing projection block (whose shortcut is not the identity)."""
    if isinstance(block, ProjectionBlock):
        return block.field
    if isinstance(block, SchemeBlock):
        f = block.vector_field()
        if isinstance(f, tuple):
            big_f, big_g = f

            def coupled(y: Tensor) -> Tensor:
                y1, y2 = torch.chunk(y, 2, dim=1)
                return torch.cat([big_f(y2), big_g(y1)], dim=1)

            return coupled
        return f
    raise UserError(f"cannot read a vector field from block {type(block).__name__}")


def scheme_depth(model: nn.Module, net: SchemeNet) -> Depth:
    """States after `net.stem` and after every block, read with forward hooks during `model(x)`."""
    blocks = list(net.blocks)

    def states(x: Tensor) -> list[Tensor]:
        out: list[Tensor] = []

        def keep(_m: nn.Module, _args: tuple[Tensor, ...], output: Tensor) -> None:
            out.append(output.detach().clone())

        hooks = [m.register_forward_hook(keep) for m in [net.stem, *blocks]]
        try:
            model(x)
        finally:
            for hook in hooks:
                hook.remove()
        return out

    times = [0.0]
    for block in blocks:
        times.append(times[-1] + float(block.h))
    return Depth(states, times, [_block_field(b) for b in blocks])


def ode_depth(model: nn.Module, block: ODEBlock, points: int) -> Depth:
    """States of `block` at `points` equally spaced times in [0, t1], integrated by torchdiffeq with
    the block's own solver and tolerances from the input the block receives inside `model(x)`.

    A fixed-step solver with step_size 0 steps on this grid (the model itself takes one step).
    """
    if points < 2:
        raise UserError(f"{option('time_points')} must be >= 2, got {points}")
    cfg = block.config
    grid = torch.linspace(0.0, cfg.t1, points)

    def states(x: Tensor) -> list[Tensor]:
        captured: list[Tensor] = []

        def grab(_m: nn.Module, args: tuple[Tensor, ...]) -> None:
            captured.append(args[0].detach().clone())
            raise _Stop

        hook = block.register_forward_pre_hook(grab)
        try:
            model(x)
        except _Stop:
            pass
        finally:
            hook.remove()
        y0 = captured[0]
        ys = odeint(block.func, y0, grid.to(y0), rtol=cfg.rtol, atol=cfg.atol, method=cfg.solver,
                    options=cfg.options())
        return list(ys)

    def field_at(t: float) -> Field:
        return lambda y: block.func(torch.tensor(t, dtype=y.dtype, device=y.device), y)

    return Depth(states, grid.tolist(), [field_at(t) for t in grid.tolist()[:-1]])


def depth_of(model: nn.Module, points: int = 11) -> Depth:
    """The `Depth` view of a residual (SchemeNet) or Neural ODE (ODEBlock) model."""
    for module in model.modules():
        if isinstance(module, SchemeNet):
            return scheme_depth(model, module)
        if isinstance(module, ODEBlock):
            return ode_depth(model, module, points)
    raise UserError(f"{type(model).__name__} has neither residual blocks (SchemeNet) nor an ODE block to follow")


def _rms(t: Tensor) -> Tensor:
    """Per-sample root-mean-square: the L2 norm over sqrt(size), so a state that a strided block
    shrinks is not counted as a smaller perturbation just for having fewer entries (ratios between
    same-shaped states are the plain L2 ratios)."""
    flat = t.flatten(1)
    return flat.norm(dim=1) / flat.shape[1] ** 0.5


def _norms(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1)


@dataclass
class Measurement:
    """Per-sample amplification (N, depth+1) and per-depth Lipschitz ratios (N, depth), both in RMS."""

    amplification: Tensor
    lipschitz: Tensor


@torch.no_grad()
def measure(model: nn.Module, x: Tensor, delta: Tensor, depth: Depth | None = None) -> Measurement:
    """Follow x and x + delta through `model`'s depth; eval mode, no clamping to [0, 1] (this
    measures the network map, not a threat model)."""
    depth = depth or depth_of(model)
    with eval_mode(model):
        ys, zs = depth.states(x), depth.states(x + delta)
        gaps = torch.stack([_rms(z - y) for y, z in zip(ys, zs)], dim=1)
        lips = [_rms(f(z) - f(y)) / _rms(z - y) for f, y, z in zip(depth.fields, ys, zs)]
    return Measurement(gaps / gaps[:, :1], torch.stack(lips, dim=1) if lips else gaps[:, :0])


def perturbation(model: nn.Module, x: Tensor, y: Tensor, kind: str, size: float, gen: torch.Generator) -> Tensor:
    """A per-sample perturbation of L2 norm `size`: a Gaussian direction ("random") or the FGSM
    direction sign(∇x CE) ("adversarial", Goodfellow et al. 2015)."""
    if kind == "random":
        direction = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    elif kind == "adversarial":
        direction = input_gradients(model, x, y).sign()
    else:
        raise UserError(f"perturbation kind must be one of {', '.join(KINDS)}, got {kind!r}")
    scale = size / _norms(direction).clamp_min(1e-12)
    return direction * scale.view(-1, *([1] * (x.dim() - 1)))


def stability_rows(
    model: nn.Module, name: str, x: Tensor, y: Tensor, sizes: list[float], kinds: tuple[str, ...] = KINDS,
    points: int = 11, seed: int = 0,
) -> list[dict]:
    """Long-form rows (model, kind, size, depth, time, position, amplification mean / max over
    samples, lipschitz max over samples of the field acting at that depth; NaN after the last)."""
    depth = depth_of(model, points)
    last = len(depth.times) - 1
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for kind in kinds:
        for size in sizes:
            m = measure(model, x, perturbation(model, x, y, kind, size, gen), depth)
            for n, t in enumerate(depth.times):
                rows.append({
                    "model": name, "kind": kind, "size": size, "depth": n, "time": t,
                    "position": n / last if last else 0.0,
                    "amplification": float(m.amplification[:, n].mean()),
                    "amplification_max": float(m.amplification[:, n].max()),
                    "lipschitz": float(m.lipschitz[:, n].max()) if n < last else float("nan"),
                })
    return rows
