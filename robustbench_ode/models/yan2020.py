"""Yan et al.'s released MNIST networks ("On Robustness of Neural Ordinary Differential Equations",
ICLR 2020; code and checkpoints: github.com/HanshuYAN/TisODE, `mnist/networks.py`), layer for layer.

Written from the facts of their code (layer order, shapes, integration times), so that the
`state_dict` of each model has exactly the names and shapes of their released `model_best.pth`
files: `odebench convert model_best.pth w.safetensors`, then `--model yan2020_ode --weights
w.safetensors` loads strictly (a DataParallel file's `module.` prefix is dropped on loading).

- `yan2020_cnn` (CNN_MNIST): stem = conv3x3 1->64 *without padding* (28 -> 26), GroupNorm-ReLU,
  conv4x4 stride 2 (26 -> 13), GroupNorm-ReLU; one residual block
  `y + ReLU(GN(conv(ReLU(GN(conv(y))))))` (post-activation, convs without bias, no time channel);
  global average pool, linear 64 -> 10. No GroupNorm-ReLU before the pool.
- `yan2020_ode` (ODENet_MNIST): the same stem and head; the block is an ODE y' = f(t, y) on
  [0, 1], f = the residual branch above with t concatenated as an input channel of each conv
  (with bias), integrated by fixed-step Euler with step 0.1 (10 evaluations).
- `yan2020_tisode` (ODENet_tisode): the same stem and head; f has no time input (a time-invariant
  field, convs without bias), Euler with step 0.05 over [0, 1] (20 evaluations). Their forward
  also integrates on to t = 1.05 with |f| for a steady-state training loss; that second solve
  never touches the logits and is not built here (odebench evaluates, it does not train TisODE).

Inputs are raw [0, 1] pixels: their loaders apply only `ToTensor()`, so there is no
normalisation. The ODE blocks are odebench `ODEBlock`s (NFE counts, `--grad-solver`, the
audit's solver checks); renaming hooks give their parameters the published names.

How these differ from `odenet_yan` / `odenet_yan_twin` (models.odenet, odebench's own builder with
Yan et al.'s sizes): those have a padded stem (28 -> 28 -> 14), Chen et al.'s pre-activation f
ending in GroupNorm, a GroupNorm-ReLU head, and a twin with biases and a time channel.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..data.base import DatasetInfo
from ..registry import MODELS
from .base import ImageClassifier
from .odenet import ConcatConv2d
from .ode_block import ODEBlock, SolverConfig
from .options import require_positive

CHANNELS = 64


def _norm(channels: int) -> nn.GroupNorm:
    """Their `norm(dim)`: GroupNorm with min(32, dim) groups."""
    return nn.GroupNorm(min(32, channels), channels)


def _stem(in_channels: int) -> list[nn.Module]:
    """conv3x3 (no padding), GN, ReLU, conv4x4 stride 2 (padding 1), GN, ReLU: indices 0-5 of their `net`."""
    return [nn.Conv2d(in_channels, CHANNELS, 3, 1), _norm(CHANNELS), nn.ReLU(inplace=True),
            nn.Conv2d(CHANNELS, CHANNELS, 4, 2, 1), _norm(CHANNELS), nn.ReLU(inplace=True)]


def _head(num_classes: int) -> list[nn.Module]:
    """Global average pool, flatten, linear: indices 7-9 of their `net` (no GroupNorm-ReLU first)."""
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(CHANNELS, num_classes)]


class PostActivationField(nn.Module):
    """f(t, y) = ReLU(GN(conv2(t, ReLU(GN(conv1(t, y)))))): their ODEfunc (`time_input=True`: each
    conv, with bias, gets t as a first constant input channel, their `ConcatConv2d`) or
    ODEfunc_tisode (`time_input=False`: plain convs without bias, t unused)."""

    def __init__(self, channels: int, time_input: bool) -> None:
        super().__init__()
        self.time_input = time_input
        conv = (lambda: ConcatConv2d(channels, channels)) if time_input else (lambda: nn.Conv2d(channels, channels, 3, 1, 1, bias=False))
        self.conv1, self.norm1 = conv(), _norm(channels)
        self.conv2, self.norm2 = conv(), _norm(channels)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        if self.time_input:
            out = torch.relu(self.norm1(self.conv1(t, y)))
            return torch.relu(self.norm2(self.conv2(t, out)))
        out = torch.relu(self.norm1(self.conv1(y)))
        return torch.relu(self.norm2(self.conv2(out)))


class ResBlock(PostActivationField):
    """Their CNN's residual block: y + f(y), f the time-free branch (one Euler step of size 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, time_input=False)

    def forward(self, y: Tensor) -> Tensor:  # type: ignore[override]
        return y + super().forward(y, y)  # without a time input the t argument is unused


class PublishedNames(nn.Module):
    """A body whose `state_dict` shows some module prefixes under their published names.

    `renames` maps an internal prefix (e.g. 'net.6.func.', the `ODEBlock`'s field) to the published
    one ('net.6.odefunc.'), applied in order when saving and in reverse order when loading; so
    the released tensors load strictly while the network keeps odebench's building blocks.
    """

    def __init__(self, renames: dict[str, str]) -> None:
        super().__init__()
        self.renames = dict(renames)
        self.register_state_dict_post_hook(_to_published)
        self.register_load_state_dict_pre_hook(_from_published)


def _rename(state: dict[str, Any], old: str, new: str) -> None:
    for key in [k for k in state if k.startswith(old)]:
        state[new + key[len(old):]] = state.pop(key)


def _to_published(module: PublishedNames, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    for internal, published in module.renames.items():
        _rename(state, prefix + internal, prefix + published)


def _from_published(module: PublishedNames, state: dict[str, Any], prefix: str, *_: Any) -> None:
    for internal, published in reversed(module.renames.items()):
        _rename(state, prefix + published, prefix + internal)


class SequentialNet(PublishedNames):
    """Their CNN_MNIST / ODENet_MNIST: one `nn.Sequential` called `net` (stem 0-5, block 6, head 7-9)."""

    def __init__(self, block: nn.Module, in_channels: int, num_classes: int) -> None:
        ode = {"net.6.func.": "net.6.odefunc."} | {f"net.6.odefunc.conv{i}.conv.": f"net.6.odefunc.conv{i}._layer." for i in (1, 2)}
        super().__init__(ode if isinstance(block, ODEBlock) else {})
        self.net = nn.Sequential(*_stem(in_channels), block, *_head(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def split_first(self) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
        """(the first conv, the rest): what YOPO's first-layer adversary needs."""
        return self.net[0], self.net[1:]


class TisODENet(PublishedNames):
    """Their ODENet_tisode: `downsampling_layers`, the field itself as `feature_layers`, `fc_layers`."""

    def __init__(self, block: ODEBlock, in_channels: int, num_classes: int) -> None:
        super().__init__({"block.func.": "feature_layers."})
        self.downsampling_layers = nn.Sequential(*_stem(in_channels))
        self.block = block
        self.fc_layers = nn.Sequential(*_head(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_layers(self.block(self.downsampling_layers(x)))

    def split_first(self) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
        """(the first conv, the rest): what YOPO's first-layer adversary needs."""
        stem_rest = self.downsampling_layers[1:]
        return self.downsampling_layers[0], lambda z: self.fc_layers(self.block(stem_rest(z)))


def _raw_pixels(info: DatasetInfo) -> DatasetInfo:
    """`info` without normalisation: Yan et al. feed `ToTensor()` pixels in [0, 1] to the network."""
    return replace(info, mean=(0.0,) * info.in_channels, std=(1.0,) * info.in_channels)


def _euler(step_size: float) -> SolverConfig:
    return SolverConfig(solver="euler", t1=1.0, step_size=step_size)


@MODELS.register("yan2020_cnn", "Yan et al. 2020's released MNIST CNN (TisODE repo, CNN_MNIST): unpadded stem, "
                 "one post-activation residual block; loads their model_best.pth tensors strictly")
def yan2020_cnn(info: DatasetInfo) -> ImageClassifier:
    """Their CNN_MNIST, layer for layer (see the module docstring)."""
    return ImageClassifier(_raw_pixels(info), SequentialNet(ResBlock(CHANNELS), info.in_channels, info.num_classes))


@MODELS.register("yan2020_ode", "Yan et al. 2020's released MNIST ODENet (TisODE repo, ODENet_MNIST): f with a "
                 "time channel, Euler step 0.1 over [0, 1]; loads their model_best.pth tensors strictly")
def yan2020_ode(info: DatasetInfo, step_size: float = 0.1) -> ImageClassifier:
    """Their ODENet_MNIST; `step_size` is their `--step_size` (0.1 in every published run)."""
    require_positive("yan2020_ode", step_size=step_size)
    block = ODEBlock(PostActivationField(CHANNELS, time_input=True), _euler(step_size))
    return ImageClassifier(_raw_pixels(info), SequentialNet(block, info.in_channels, info.num_classes))


@MODELS.register("yan2020_tisode", "Yan et al. 2020's released MNIST TisODE (ODENet_tisode): time-invariant f, "
                 "Euler step 0.05 over [0, 1]; loads their (DataParallel) model_best.pth tensors strictly")
def yan2020_tisode(info: DatasetInfo, step_size: float = 0.05) -> ImageClassifier:
    """Their ODENet_tisode's prediction path (integration times 0, 0.75, 1; the logits read y(1))."""
    require_positive("yan2020_tisode", step_size=step_size)
    block = ODEBlock(PostActivationField(CHANNELS, time_input=False), _euler(step_size))
    return ImageClassifier(_raw_pixels(info), TisODENet(block, info.in_channels, info.num_classes))
