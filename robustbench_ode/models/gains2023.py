"""GAINS' released MNIST Neural ODE (Zeqiri, Müller, Fischer, Vechev: "Efficient Certified Training
and Robustness Verification of Neural ODEs", ICLR 2023; code and checkpoints: github.com/eth-sri/GAINS,
MIT licence), layer for layer, with their inference-time ODE solver written anew from the facts
of their code (`model.py`: ODENet_mini_MNIST, ODEBlock method "dopri5_0.005_2a"; their vendored
torchdiffeq: `rk_common.py`, `misc.py`).

Network (`state_dict` names are exactly those of their checkpoints' `state_dict`, e.g.
`models/pre-trained/MNIST/activation_mini_method_dopri5_0.005_2a_checkpoint_epoch_100_seed_12345.pth.tar`):
net.0 normalisation (mean 0.1307, std 0.3081; nothing stored; here `ImageClassifier` normalises and
net.0 is an identity), net.1 conv 5x5 stride 2 (1 -> 32, no padding: 28 -> 12), net.2 ReLU, net.3
conv 5x5 stride 2 (32 -> 32: 12 -> 4; images under 13 pixels, not theirs, get padding 2), net.4 ReLU, net.5 the ODE block on a 32x4x4 state over
[0, 1], net.6 global average pool, net.7 flatten, net.8 linear 32 -> 10. The field is
f(t, y) = ReLU(conv2(t, ReLU(conv1(t, y)))), each conv 3x3 (padding 1, bias) over [t, y] (the time
as a first constant channel, their ConcatConv2d). `net.5.running_mean_step` (shape (1,)) is the
solver's first step size, stored in their dopri5 files.

Their solver ("controlled adaptive" Dormand-Prince 5(4), FSAL, rtol 0), per sample:
- first step dt = clamp(running_mean_step, 0, 1); f is evaluated once at (0, y0), then 6 times
  per attempted step (the 7th stage, f at the step's end, is the next step's first); stages whose
  node is 1 are evaluated at the float just below the step's end time;
- error = sum over the state of |embedded error estimate| / atol (atol 0.005; the error weights
  are torchdiffeq's, the 5th-order solution minus Shampine's 4th-order one);
- error <= factor^-5 (factor 2): accept and multiply dt by the factor; error <= 1: accept, keep dt;
  else reject and divide dt by the factor;
- the next step is clipped so that t + dt <= 1; the first clip starts a counter that every later
  reject increments;
- fallback: when a reject would give dt < 0.02 before any clip, or the counter exceeds 2, the
  rejected step's own dt is kept and from then on every step is accepted without an error check,
  with dt = min(dt, 1 - t);
- steps go on while float32(1 - 1e-8) > t (all time arithmetic in the state's dtype, float32, as
  theirs runs: their first step is a float32 tensor); the output is the state at the last step's
  end, exactly t = 1 (no interpolation).
Their code averages the error over the batch (one step sequence for a whole batch); their
certification and attack scripts run batch size 1, so here every sample gets its own step sequence,
as their published evaluation has it. The samples are solved together (f is evaluated on the
samples still integrating), so an image's decisions depend on nothing but the image; only the
float rounding of batched kernels can differ with the batch (a few 1e-6 on a CPU conv of one
image against several), the same caveat as `--ode-backend torchode`.

What is not reproduced: their training-mode solve (first step from a heuristic on the batch and
a running-mean update of `running_mean_step`); this block always starts from the stored value and
never changes it. A weights file without `net.5.running_mean_step` (their Euler checkpoints, a
different solver) does not load strictly; the value a fresh model holds is their evaluation
scripts' fallback for such files, 0.2.

odebench tooling: the block is an `ODEBlock` (NFE counters, `nfe_per_sample`), so
`solver_surrogate(model, solver="rk4", step_size=0.05)` gives a model that integrates the same
field with torchdiffeq's rk4 over the same weights (`--grad-solver`, the audit). Its `config`
says dopri5 with atol 0.005 and the torchode backend (the tooling reads it: adaptive, so fp32;
batch-independent); the rtol there (1e-9) only stands in for their rtol 0, which `SolverConfig`
refuses, and is used only by a surrogate that keeps this block's tolerances. The block itself reads
only `atol`, `t1` and `max_nfe` from it: `--ode-backend` does not change how it solves (per sample
always). Back-propagation runs through the solver's operations, the step sizes taken as constants.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
from torch import Tensor, nn

from ..data.base import DatasetInfo
from ..errors import UserError
from ..registry import MODELS
from .base import ImageClassifier
from .ode_block import ODEBlock, SolverConfig
from .odenet import ConcatConv2d
from .options import require_positive
from .yan2020 import PublishedNames

CHANNELS = 32
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # their Normalization layer (adversarial_exp.py, gains_exp.py)
DEFAULT_FIRST_STEP = 0.2  # their evaluation scripts' running_mean_step for a file without one
MIN_STEP = 0.02  # a reject below this step size (before any clip) switches to the fallback
CLIP_REJECTS = 2  # rejects allowed after the first clip at the end time before the fallback
ORDER = 5
RTOL_STANDIN = 1e-9  # SolverConfig needs rtol > 0; theirs is 0 (used only by surrogates)

# Dormand-Prince 5(4) (Dormand & Prince 1980): nodes of stages 2..7, their coefficients, and the
# error weights b5 - b4 with Shampine's 4th-order weights, as torchdiffeq's dopri5 uses them.
NODES = (1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
COEFFS = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),  # = the 5th-order weights (FSAL)
)
_B4 = (1951 / 21600, 0.0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60)
ERROR_WEIGHTS = tuple(b5 - b4 for b5, b4 in zip(COEFFS[-1] + (0.0,), _B4))


class GainsField(nn.Module):
    """Their ODEfunc_abstract (ReLU): f(t, y) = ReLU(conv2(t, ReLU(conv1(t, y)))), time-channel convs."""

    def __init__(self, channels: int = CHANNELS) -> None:
        super().__init__()
        self.conv1 = ConcatConv2d(channels, channels)
        self.conv2 = ConcatConv2d(channels, channels)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.relu(self.conv2(t, torch.relu(self.conv1(t, y))))


class GainsODEBlock(ODEBlock):
    """Their controlled adaptive dopri5 (see the module docstring), one step sequence per sample.

    `atol` and `step_factor` are the two numbers of their method names ("dopri5_0.005_2a");
    `config.t1` is the end time (1 in every released model). After a forward, `nfe_per_sample`
    holds each sample's evaluations (1 + 6 per attempted step), `nfe_forward` the largest, and
    `steps` each sample's attempted steps as (t, dt, error, accepted) (error 0 after the fallback).
    """

    def __init__(self, func: nn.Module, atol: float = 0.005, step_factor: float = 2.0, t1: float = 1.0,
                 max_nfe: int = 0) -> None:
        if not step_factor > 1:
            raise UserError(f"GAINS solver: step_factor must be > 1, got {step_factor}")
        super().__init__(func, SolverConfig("dopri5", RTOL_STANDIN, atol, t1, max_nfe=max_nfe, backend="torchode"))
        self.step_factor = float(step_factor)
        self.register_buffer("running_mean_step", torch.full((1,), DEFAULT_FIRST_STEP))
        self.steps: list[list[tuple[float, float, float, bool]]] = []

    def forward(self, y0: Tensor) -> Tensor:
        self.nfe_forward = 0
        self.nfe_backward = 0
        self._in_forward = True
        try:
            return self._solve(y0)
        finally:
            self._in_forward = False

    def _field(self, t: Tensor, y: Tensor, shape: torch.Size) -> Tensor:
        """f on flat states (n, D), one time per sample; counted by `ODEBlock._dynamics`."""
        return self._dynamics(t, y.reshape(-1, *shape)).reshape(y.shape[0], -1)

    def _solve(self, y0: Tensor) -> Tensor:
        cfg = self.config
        n, shape, td, dev = y0.shape[0], y0.shape[1:], y0.dtype, y0.device
        nodes = torch.tensor(NODES, dtype=torch.float64).to(td).tolist()  # the nodes in the time dtype
        coeffs = [torch.tensor(c, dtype=torch.float64).to(device=dev, dtype=td) for c in COEFFS]
        err_w = torch.tensor(ERROR_WEIGHTS, dtype=torch.float64).to(device=dev, dtype=td)
        end = torch.tensor(cfg.t1, dtype=td, device=dev)
        stop = torch.tensor(cfg.t1 - 1e-8, dtype=td, device=dev)  # their loop: (end - 1e-8) > t, in float32
        factor, grow_below = self.step_factor, self.step_factor ** -ORDER

        first = self.running_mean_step.detach().to(device=dev, dtype=td).reshape(-1)[:1].clamp(0.0, 1.0)
        if not bool(first > 0):
            raise RuntimeError(f"GAINS solver: first step size {first.item()} (running_mean_step) must be > 0")
        t = torch.zeros(n, dtype=td, device=dev)
        dt = first.expand(n).clone()
        clips = torch.zeros(n, dtype=torch.long, device=dev)
        fallback = torch.zeros(n, dtype=torch.bool, device=dev)
        nfe = torch.ones(n, dtype=torch.long, device=dev)
        self.steps = [[] for _ in range(n)]
        y = y0.reshape(n, -1)
        f = self._field(t, y, shape)

        active = stop > t
        while bool(active.any()):
            idx = active.nonzero().squeeze(1)
            if 0 < cfg.max_nfe < int(nfe[idx].max()) + 6:
                raise RuntimeError(
                    f"ODE block exceeded max_nfe={cfg.max_nfe} function evaluations for a sample (GAINS dopri5, "
                    f"atol={cfg.atol}, factor={factor}); raise max_nfe")
            ya, fa, ta, dta = y[idx], f[idx], t[idx], dt[idx]
            if not bool(torch.isfinite(ya).all()):
                raise RuntimeError("GAINS solver: non-finite values in the ODE state")
            t1 = ta + dta
            ks = [fa]
            yi = ya
            for node, row in zip(nodes, coeffs):
                weights = dta[:, None] * row  # (m, stages so far), each sample's own step
                yi = ya + torch.bmm(torch.stack(ks, dim=-1), weights.unsqueeze(-1)).squeeze(-1)
                ti = torch.nextafter(t1, t1 - 1) if node == 1.0 else ta + node * dta
                ks.append(self._field(ti, yi, shape))
            nfe[idx] += len(coeffs)
            y1, f1 = yi, ks[-1]  # FSAL: the last stage's input is the 5th-order solution

            with torch.no_grad():
                error = torch.bmm(torch.stack(ks, dim=-1), (dta[:, None] * err_w).unsqueeze(-1)).squeeze(-1)
                error = error.abs().sum(dim=1) / cfg.atol
                was_fallback = fallback[idx]
                error = torch.where(was_fallback, torch.zeros_like(error), error)
                accept = was_fallback | (error <= 1)
                t_next = torch.where(accept, t1, ta)
                # the multiplicative rule
                grow, within = error <= grow_below, error <= 1
                step = torch.where(grow, dta * factor, torch.where(within, dta, dta / factor))
                c = clips[idx]
                c = torch.where(~within & (c > 0), c + 1, c)
                trigger = ~within & (((step < MIN_STEP) & (c == 0)) | (c > CLIP_REJECTS))
                step = torch.where(trigger, dta, step)
                over = ~trigger & (t_next + step > end)
                step = torch.where(over, end - t_next, step)
                c = torch.where(over & (c == 0), torch.ones_like(c), c)
                # after the fallback: accept everything, clip at the end time
                step = torch.where(was_fallback, torch.minimum(dta, end - t_next), step)
                c = torch.where(was_fallback, clips[idx], c)

            keep = accept[:, None]
            y = y.index_copy(0, idx, torch.where(keep, y1, ya))
            f = f.index_copy(0, idx, torch.where(keep, f1, fa))
            for i, t0_, dt_, e_, a_ in zip(idx.tolist(), ta.tolist(), dta.tolist(), error.tolist(), accept.tolist()):
                self.steps[i].append((t0_, dt_, e_, a_))
            t = t.index_copy(0, idx, t_next)
            dt = dt.index_copy(0, idx, step)
            clips = clips.index_copy(0, idx, c)
            fallback = fallback.index_copy(0, idx, was_fallback | trigger)
            active = stop > t

        self.nfe_per_sample = nfe.cpu()
        return y.reshape(y0.shape)

    def extra_repr(self) -> str:
        return (f"GAINS controlled adaptive dopri5: atol={self.config.atol}, rtol=0, factor={self.step_factor}, "
                f"t1={self.config.t1}, first step=running_mean_step, per sample")


class GainsNet(PublishedNames):
    """Their ODENet_mini_MNIST: one `nn.Sequential` called `net` (normalisation slot 0, stem 1-4, block 5, head 6-8)."""

    def __init__(self, block: GainsODEBlock, in_channels: int, num_classes: int, padding: int = 0) -> None:
        renames = {"net.5.func.": "net.5.odefunc."}
        renames |= {f"net.5.odefunc.conv{i}.conv.": f"net.5.odefunc.conv{i}._layer." for i in (1, 2)}
        super().__init__(renames)
        self.register_state_dict_post_hook(_their_order)  # after the renames: net.5's tensors back before net.8's
        self.net = nn.Sequential(
            nn.Identity(),  # their Normalization (no tensors); ImageClassifier normalises before the body
            nn.Conv2d(in_channels, CHANNELS, 5, 2, padding), nn.ReLU(),
            nn.Conv2d(CHANNELS, CHANNELS, 5, 2, padding), nn.ReLU(),
            block,
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(CHANNELS, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def split_first(self) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
        """(the first conv, the rest): what YOPO's first-layer adversary needs."""
        return self.net[1], self.net[2:]


def _their_order(module: nn.Module, state: dict, prefix: str, _meta: object) -> None:
    """Order the tensors as their files do (by layer index), which renaming (pop, re-insert) disturbs."""
    keys = [k for k in state if k.startswith(prefix + "net.")]
    for key in sorted(keys, key=lambda k: int(k[len(prefix) + 4:].split(".", 1)[0])):  # stable
        state[key] = state.pop(key)


@MODELS.register("gains2023_ode", "GAINS (Zeqiri et al., ICLR 2023) released MNIST Neural ODE (ODENet_mini_MNIST) "
                 "with their controlled adaptive dopri5 (atol 0.005, factor 2), per sample; loads their "
                 "dopri5_0.005_2a checkpoints' state_dict strictly")
def gains2023_ode(info: DatasetInfo, atol: float = 0.005, step_factor: float = 2.0,
                  max_nfe: int = 0) -> ImageClassifier:
    """Their ODENet_mini_MNIST; `atol` and `step_factor` are their method name's numbers ("dopri5_0.005_2a")."""
    require_positive("gains2023_ode", atol=atol)
    if not step_factor > 1:
        raise UserError(f"model 'gains2023_ode': option 'step_factor' must be > 1, got {step_factor}")
    if max_nfe < 0:
        raise UserError(f"model 'gains2023_ode': option 'max_nfe' must be >= 0 (0 = no cap), got {max_nfe}")
    block = GainsODEBlock(GainsField(CHANNELS), atol=atol, step_factor=step_factor, max_nfe=max_nfe)
    c = info.in_channels
    normalised = replace(info, mean=(MNIST_MEAN,) * c, std=(MNIST_STD,) * c)  # the constants their weights expect
    # Their unpadded stem needs >= 13 pixels (28 -> 12 -> 4); smaller images (odebench's 8x8 digits) get
    # padding 2 in both stem convs (8 -> 4 -> 2), an odebench addition that changes no tensor shape.
    padding = 0 if info.image_size >= 13 else 2
    return ImageClassifier(normalised, GainsNet(block, c, info.num_classes, padding))
