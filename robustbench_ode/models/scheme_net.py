"""One generic residual network parametrised by a numerical scheme (see `schemes.py`).

A network is a stem, stages of blocks, and a head (BN-ReLU-global pool-linear). Inside a stage
every shape-keeping block is one scheme step `scheme(f, y, h)` on a learned residual function
`f`. A shape-changing block (first block of a stage that changes width or stride) cannot apply
`f` twice or split channels, so every family uses the same projection step there:

    y -> shortcut(y) + h f(y),   shortcut = 1x1 conv with the block's stride (+ BN),

which is Euler with a learned linear change of coordinates, and reduces to `shortcut` at h = 0.
Following the paper's `y + h f(y)`, no ReLU follows the addition, so h = 0 makes a
shape-keeping block exactly the identity.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn

from .schemes import SCHEMES, Scheme

FieldFactory = Callable[[int, int, int], nn.Module]  # (in_channels, out_channels, stride)


def basic_field(c_in: int, c_out: int, stride: int) -> nn.Module:
    """He et al.'s basic residual function: conv3x3-BN-ReLU-conv3x3-BN."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(c_out),
    )


def bottleneck_field(c_in: int, c_out: int, stride: int) -> nn.Module:
    """He et al.'s bottleneck (ResNet-50): 1x1 -> 3x3 (stride) -> 1x1, width c_out/4, BN after each."""
    mid = max(c_out // 4, 1)
    return nn.Sequential(
        nn.Conv2d(c_in, mid, 1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid, mid, 3, stride, 1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
    )


def preact_field(c_in: int, c_out: int, stride: int) -> nn.Module:
    """He et al. 2016b's pre-activation residual function: BN-ReLU-conv3x3-BN-ReLU-conv3x3."""
    return nn.Sequential(
        nn.BatchNorm2d(c_in),
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
    )


class SchemeBlock(nn.Module):
    """A shape-keeping residual block: one step of `scheme` over learned residual function(s)."""

    def __init__(self, scheme: Scheme, channels: int, field: FieldFactory, h: float) -> None:
        super().__init__()
        if scheme.coupled and channels % 2:
            raise ValueError(f"scheme '{scheme.name}' splits channels in halves; got {channels}")
        width = channels // 2 if scheme.coupled else channels
        self.scheme = scheme
        self.h = h
        self.fields = nn.ModuleList(field(width, width, 1) for _ in range(scheme.fields))

    def vector_field(self) -> nn.Module | tuple[nn.Module, ...]:
        """What the step function receives as `f`: the one field, or the tuple of fields."""
        return self.fields[0] if len(self.fields) == 1 else tuple(self.fields)

    def forward(self, y: Tensor) -> Tensor:
        return self.scheme.step(self.vector_field(), y, self.h)

    def extra_repr(self) -> str:
        return f"scheme={self.scheme.name}, h={self.h}"


class ProjectionBlock(nn.Module):
    """A shape-changing residual block: `shortcut(y) + h f(y)` with a 1x1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, field: FieldFactory, h: float, norm: bool) -> None:
        super().__init__()
        self.h = h
        self.field = field(c_in, c_out, stride)
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1, stride, bias=False)]
        if norm:
            layers.append(nn.BatchNorm2d(c_out))
        self.shortcut = nn.Sequential(*layers)

    def forward(self, y: Tensor) -> Tensor:
        return self.shortcut(y) + self.h * self.field(y)

    def extra_repr(self) -> str:
        return f"h={self.h}"


class SchemeNet(nn.Module):
    """Stem -> stages of residual blocks -> BN-ReLU-pool-linear head.

    `widths[i]` / `depths[i]` are stage i's output channels and block count; stages after the
    first halve the resolution. `stem_norm=False` gives a pre-activation network's bare-conv stem
    and BN-less projection shortcuts (He et al. 2016b).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        scheme: str,
        widths: Sequence[int],
        depths: Sequence[int],
        field: FieldFactory,
        h: float,
        stem_width: int,
        stem_norm: bool = True,
    ) -> None:
        super().__init__()
        stem: list[nn.Module] = [nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False)]
        if stem_norm:
            stem += [nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        c_in = stem_width
        for i, (c_out, depth) in enumerate(zip(widths, depths)):
            stride = 1 if i == 0 else 2
            for _ in range(depth):
                if stride != 1 or c_in != c_out:
                    blocks.append(ProjectionBlock(c_in, c_out, stride, field, h, norm=stem_norm))
                else:
                    blocks.append(SchemeBlock(SCHEMES[scheme], c_out, field, h))
                c_in, stride = c_out, 1
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c_in, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


def cifar_scheme_net(
    in_channels: int, num_classes: int, scheme: str, blocks_per_stage: int, width: int, h: float
) -> SchemeNet:
    """He et al.'s CIFAR layout (3 stages, widths w/2w/4w, basic fields) stepped by `scheme`."""
    widths = (width, 2 * width, 4 * width)
    return SchemeNet(in_channels, num_classes, scheme, widths, (blocks_per_stage,) * 3, basic_field, h, width)
