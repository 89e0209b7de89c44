"""odebench's model contract made to hold for any network: [0, 1] pixels in, (N, classes) logits
out. A network that expects normalised input is wrapped (`--normalize MEANS/STDS`, `wrap`), so
attacks and ε stay in pixel units; one forward of dataset images checks the output (`check_logits`)
before any attack runs."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .data.base import DatasetInfo
from .errors import UserError, first_line, option
from .models.base import swap_solver
from .models.intercept import Integrated
from .models.ode_block import ODEBlock
from .models.probe import integrates


def parse_normalize(text: str, info: DatasetInfo) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """'MEANS/STDS' (each one number or one per channel, comma-separated: '0.1307/0.3081',
    '0.49,0.48,0.45/0.25,0.24,0.26') or 'dataset' (the dataset's own statistics) -> per-channel
    (mean, std) tuples."""
    if text.strip() == "dataset":
        return info.mean, info.std
    means, sep, stds = text.partition("/")
    example = "e.g. 0.1307/0.3081 or 0.49,0.48,0.45/0.25,0.24,0.26, or 'dataset'"
    if not sep:
        raise UserError(f"{option('normalize')} '{text}' must be MEANS/STDS ({example})")
    try:
        mean, std = ([float(v) for v in part.split(",") if v.strip()] for part in (means, stds))
    except ValueError:
        raise UserError(f"{option('normalize')} '{text}' must hold numbers ({example})") from None
    channels = info.in_channels
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        counts = "one value" if channels == 1 else f"1 or {channels} values"
        raise UserError(f"{option('normalize')} '{text}': give {counts} on each side of '/' "
                        f"({info.name} has {channels} channel{'s' if channels > 1 else ''})")
    if any(not s > 0 for s in std):
        raise UserError(f"{option('normalize')} '{text}': standard deviations must be > 0")
    return tuple(mean * (channels // len(mean))), tuple(std * (channels // len(std)))


class PixelModel(nn.Module):
    """A network behind odebench's contract: [0, 1] pixels in, logits out; with `mean`/`std` the
    pixels are normalised first, so that attacks and ε stay in pixel units."""

    def __init__(self, net: nn.Module, normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> None:
        super().__init__()
        self.net = net
        mean, std = normalize or (None, None)
        self.register_buffer("mean", None if mean is None else torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", None if std is None else torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.net(x)


class PixelODEModel(PixelModel):
    """A `PixelModel` whose network contains `ODEBlock`s: `with_solver` gives a same-weight copy
    that integrates differently (what `--grad-solver` and the audit's surrogate check need)."""

    def with_solver(self, solver: str, step_size: float = 0.0, adjoint: bool | None = None, rtol: float | None = None,
                    atol: float | None = None, max_nfe: int | None = None, backend: str | None = None) -> nn.Module:
        return swap_solver(self, solver, step_size, adjoint, rtol, atol, max_nfe, backend)


def wrap(net: nn.Module, normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
         sample: Tensor | None = None) -> PixelModel:
    """`net` as a `PixelModel`, or a `PixelODEModel` when it contains an ODE block or, run on
    `sample` ([0, 1] images on `net`'s device), calls torchdiffeq or torchode itself (then it is
    wrapped in `intercept.Integrated`, which makes those solves visible to odebench)."""
    ode = any(isinstance(m, ODEBlock) for m in net.modules())
    if not ode and sample is not None and integrates(PixelModel(net, normalize), sample):
        net, ode = Integrated(net), True
    return (PixelODEModel if ode else PixelModel)(net, normalize)


def check_logits(model: nn.Module, info: DatasetInfo, sample: Tensor, label: str) -> None:
    """One forward of `sample` (dataset images): it must run and give (N, num_classes) float logits."""
    shape = "x".join(map(str, sample.shape[1:]))
    try:
        with torch.no_grad():
            out = model(sample)
    except Exception as exc:
        raise UserError(f"model '{label}' fails on {info.name} images (C x H x W = {shape}): {first_line(exc)}") from None
    expected = (len(sample), info.num_classes)
    if not isinstance(out, Tensor) or tuple(out.shape) != expected or not out.is_floating_point():
        got = f"shape {tuple(out.shape)} ({out.dtype})" if isinstance(out, Tensor) else f"a {type(out).__name__}"
        raise UserError(f"model '{label}' returns {got} for {len(sample)} {info.name} images; odebench needs "
                        f"logits of shape (N, {info.num_classes}) ({info.num_classes} classes)")
