"""Neural ODE classifier (Chen et al. 2018), the paper's robust model (Sec. 3.2, Appendix A).

downsampling convs -> ODE block (y' = f(t, y) on [0, t1]) -> GroupNorm-ReLU -> global pool -> linear.

- Downsampling adapts to the image: a 3x3 conv lifts to `channels`, then (GroupNorm-ReLU-4x4
  stride-2 conv) repeats while the side is > `downsample_to` (default 8): 28 -> 14 -> 7,
  32 -> 16 -> 8, 8 stays 8; with `downsample_to=14`, 28 -> 14 (Yan et al.'s stem).
- f is Chen et al.'s ODE function generalised to `conv_layers` convolutions:
  (GroupNorm-ReLU-conv3x3 with t concatenated as an extra input channel) x conv_layers, GroupNorm.
- Table A1's "convolution layers" (4 on MNIST, 5 on CIFAR-10) is read as the depth of f, the
  part a Neural ODE's hyper-parameters describe; the downsampling above is not counted.
- `zero_init=True` sets the scale of f's last GroupNorm to 0, so f = 0 and the flow is the
  identity at initialisation. The paper gives no initialisation; with t1 = 100 the default one
  starts from a field that swamps the input, and on CIFAR-10 (32 channels, 2k images, 3 epochs)
  zero-init reached 27% test accuracy at NFE ~35 where the default reached 16% at NFE ~70.

`ODEClassifier.with_solver` returns a second classifier over the same parameters that
integrates differently (e.g. rk4 to attack through while dopri5 classifies).

Discrete twins: one residual block y + f(0, y) is exactly ONE forward-Euler step of size 1 over
[0, 1] of the same f (`schemes.euler`). So the ResNet twin of any ODE net is the same network
with its block integrated by one Euler step over the whole interval: option `twin=true` (any
builder below) does that, y + t1 f(0, y), whatever `solver` / `step_size` say. A twin has the
same parameters (names and shapes) as its ODE, so "ODE vs ResNet" compares the block's
integration and nothing else. `with_solver("euler")` gives the twin of an already trained ODE.

The registered Neural ODEs differ only in their defaults (`ODE_PRESETS`); every default stays
overridable by `--model-arg`:
- `odenet`: CPU-cheap (t1 = 1, 64 channels, f of 2 convs).
- `odenet_mnist` / `odenet_cifar10`: the paper's Table A1 (tolerances are not given there;
  Chen et al.'s 1e-3 kept).
- `odenet_yan`: Yan et al.'s MNIST ODENet ("On Robustness of Neural ODEs", ICLR 2020): 64
  channels, f of 2 convs, fixed-step Euler with step 0.1 over [0, 1], ONE stride-2 conv in the
  stem (28 -> 14; `downsample_to=14`). `odenet_yan_twin`: the same with `twin=true`, i.e. Yan
  et al.'s CNN (one residual block). Differences from their released code (HanshuYAN/TisODE,
  mnist/networks.py): their stem conv has no padding (28 -> 26 -> 13), their f is post-activation
  (conv-GN-ReLU twice) where ours is Chen et al.'s pre-activation form, their head has no
  GroupNorm-ReLU, and their CNN's convs have no bias and no time channel (at t = 0 the time
  channel is zero, so only the bias differs).

Every builder takes `backend` ("torchdiffeq" | "torchode", see `ode_block`): training defaults
to torchdiffeq so existing checkpoints reproduce; the weights do not depend on the backend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..data.base import DatasetInfo
from ..errors import UserError, option
from ..parsing import parse_kv
from ..registry import MODELS, Entry, options_of
from .base import ImageClassifier
from .ode_block import SOLVER_NAMES, TORCHODE_METHODS, ODEBlock, SolverConfig
from .options import require_positive


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups (Wu & He 2018), as Chen et al. and Dupont et al. use."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ConcatConv2d(nn.Module):
    """3x3 conv whose input gets the time t as one extra constant channel.

    t is a scalar (torchdiffeq: one time for the batch) or one time per sample of shape (batch,)
    (torchode, where every sample is at its own time).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in + 1, c_out, 3, 1, 1)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        tt = t.to(y).reshape(-1, 1, 1, 1).expand(y.shape[0], 1, y.shape[2], y.shape[3])
        return self.conv(torch.cat([tt, y], dim=1))


class ODEFunc(nn.Module):
    """The learned vector field f(t, y): `conv_layers` x (GroupNorm-ReLU-ConcatConv), then GroupNorm."""

    def __init__(self, channels: int, conv_layers: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(group_norm(channels) for _ in range(conv_layers + 1))
        self.convs = nn.ModuleList(ConcatConv2d(channels, channels) for _ in range(conv_layers))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        for norm, conv in zip(self.norms, self.convs):
            y = conv(t, torch.relu(norm(y)))
        return self.norms[-1](y)


def downsampling(in_channels: int, channels: int, image_size: int, downsample_to: int = 8) -> nn.Sequential:
    """Lift to `channels` with a 3x3 conv, then halve the side with stride-2 convs while it is > `downsample_to`."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, 1, 1)]
    size = image_size
    while size > downsample_to:
        layers += [group_norm(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 4, 2, 1)]
        size //= 2
    return nn.Sequential(*layers)


class ODENet(nn.Module):
    """downsampling -> ODE block -> head; parts are passed in so a solver variant can share them."""

    def __init__(self, downsample: nn.Module, block: ODEBlock, head: nn.Module) -> None:
        super().__init__()
        self.downsample = downsample
        self.block = block
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.downsample(x)))


class ODEClassifier(ImageClassifier):
    """An `ImageClassifier` over an `ODENet`, with solver surrogates that share its weights."""

    body: ODENet

    def __init__(self, info: DatasetInfo, body: ODENet) -> None:
        super().__init__(info, body)
        self.info = info

    def with_solver(
        self,
        solver: str,
        step_size: float = 0.0,
        adjoint: bool | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        max_nfe: int | None = None,
        backend: str | None = None,
    ) -> "ODEClassifier":
        """A NEW classifier sharing every parameter of this one but integrating with `solver`.

        None keeps this model's value. Used to attack through a fixed-step solver (e.g. rk4 at a
        small step) while the original classifies with its adaptive one. Raises UserError for an
        unknown solver or backend, or a step size an adaptive solver cannot take.
        """
        cfg = self.body.block.config
        block = self.body.block.with_config(
            solver=solver,
            step_size=step_size,
            adjoint=cfg.adjoint if adjoint is None else adjoint,
            rtol=cfg.rtol if rtol is None else rtol,
            atol=cfg.atol if atol is None else atol,
            max_nfe=cfg.max_nfe if max_nfe is None else max_nfe,
            backend=cfg.backend if backend is None else backend,
        )
        twin = ODEClassifier(self.info, ODENet(self.body.downsample, block, self.body.head))
        twin.mean, twin.std = self.mean, self.std
        return twin.train(self.training)


def parse_solver_spec(text: str, setting: str = "grad_solver") -> dict[str, Any]:
    """'rk4:step_size=0.05:adjoint=false' -> `ODEClassifier.with_solver` options, validated and typed.

    The first field names a torchdiffeq solver (or torchode's tsit5); the rest are `with_solver`
    options (step_size, adjoint, rtol, atol, max_nfe, backend). A bad solver, option or value is
    a UserError naming `setting`, the option that took this text (an attack's `grad_solver`,
    training's `train_solver`).
    """
    solver, *pairs = [part.strip() for part in text.split(":")]
    if solver not in SOLVER_NAMES + tuple(TORCHODE_METHODS):
        raise UserError(f"{option(setting)} '{text}': unknown solver '{solver}' (torchdiffeq methods: "
                        f"{', '.join(SOLVER_NAMES)}; torchode methods: {', '.join(TORCHODE_METHODS)}); "
                        "example: rk4:step_size=0.05")
    options = options_of(ODEClassifier.with_solver)
    entry = Entry(solver, ODEClassifier.with_solver, "", options, option(setting))
    return {"solver": solver} | entry.parse_options(parse_kv(pairs, option(setting)))


@dataclass(frozen=True)
class ODEPreset:
    """The defaults of one registered Neural ODE builder (see the module docstring)."""

    description: str
    channels: int = 64
    conv_layers: int = 2
    solver: str = "dopri5"
    t1: float = 1.0
    step_size: float = 0.0
    downsample_to: int = 8
    twin: bool = False


_YAN = ODEPreset("Yan et al. 2020's MNIST ODENet: 64 channels, f of 2 convs, Euler step 0.1 over [0, 1], "
                 "one stride-2 stem conv (28 -> 14)", solver="euler", step_size=0.1, downsample_to=14)

ODE_PRESETS: dict[str, ODEPreset] = {
    "odenet": ODEPreset("Neural ODE classifier (Chen et al. 2018): downsampling, ODE block (torchdiffeq/torchode), head"),
    "odenet_mnist": ODEPreset("Paper's MNIST Neural ODE (Table A1): f of 4 convs, 128 channels, dopri5, t1=100",
                              channels=128, conv_layers=4, t1=100.0),
    "odenet_cifar10": ODEPreset("Paper's CIFAR-10 Neural ODE (Table A1): f of 5 convs, 256 channels, dopri5, t1=500",
                                channels=256, conv_layers=5, t1=500.0),
    "odenet_yan": _YAN,
    "odenet_yan_twin": replace(_YAN, step_size=0.0, twin=True, description=(
        "odenet_yan's discrete twin (Yan et al.'s CNN): the same layers, the block one Euler step of size 1, "
        "i.e. one residual block y + f(0, y)")),
}


def _make_builder(name: str, preset: ODEPreset) -> Callable[..., ODEClassifier]:
    """A builder whose option defaults are `preset`'s (registry options come from its signature)."""

    def build(
        info: DatasetInfo,
        channels: int = preset.channels,
        conv_layers: int = preset.conv_layers,
        solver: str = preset.solver,
        rtol: float = 1e-3,
        atol: float = 1e-3,
        t1: float = preset.t1,
        step_size: float = preset.step_size,
        adjoint: bool = False,
        max_nfe: int = 0,
        zero_init: bool = False,
        backend: str = "torchdiffeq",
        downsample_to: int = preset.downsample_to,
        twin: bool = preset.twin,
    ) -> ODEClassifier:
        require_positive(name, channels=channels, conv_layers=conv_layers, downsample_to=downsample_to)
        if twin:  # one Euler step over the whole [0, t1]: y + t1 f(0, y), a residual block
            solver, step_size = "euler", 0.0
        config = SolverConfig(solver, rtol, atol, t1, step_size, adjoint, max_nfe, backend)
        head = nn.Sequential(
            group_norm(channels),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, info.num_classes),
        )
        func = ODEFunc(channels, conv_layers)  # drawn after the head, as before zero_init existed
        if zero_init:  # f starts at 0: the flow starts as the identity (cf. zero-init residuals, Goyal et al. 2017)
            nn.init.zeros_(func.norms[-1].weight)
        block = ODEBlock(func, config)
        body = ODENet(downsampling(info.in_channels, channels, info.image_size, downsample_to), block, head)
        return ODEClassifier(info, body)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = preset.description
    return build


for _name, _preset in ODE_PRESETS.items():
    MODELS.register(_name, _preset.description)(_make_builder(_name, _preset))
