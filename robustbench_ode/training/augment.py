"""Training-input augmentations (`--augment`): each transforms a training batch before the
method's step, so they compose with every method (an adversarial method perturbs the augmented
batch, e.g. PGD around the noisy or cropped image). Evaluation and attacks see clean images.

`--augment` is a `+`-separated list applied in order, e.g. `crop:4+flip` (the standard CIFAR
recipe: He et al. 2016) or `gaussian:50/255,75/255,100/255:p=0.5` (Yan et al. 2020's noise).

Every random draw is on the global CPU generator (then moved to the batch's device): the trainer
saves that generator's state after every epoch, so a resumed run draws exactly the same images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import UserError, option
from ..parsing import parse_number

if TYPE_CHECKING:  # each transform imports torch when it runs: parsing `--augment` stays torch-free
    import torch

Augment = Callable[["torch.Tensor"], "torch.Tensor"]

AUGMENT_HELP = ("a '+'-separated list of crop:PAD (random crop after zero-padding PAD pixels per side), flip "
                "(random horizontal flip), gaussian:SIGMA[,SIGMA...][:p=P] (noise with SIGMA drawn per image, on "
                "a fraction P of the images, default 1; clamped to [0, 1]), e.g. crop:4+flip or gaussian:100/255")


@dataclass(frozen=True)
class GaussianNoise:
    """Each training image, with probability `p`, gets sigma * N(0, 1) noise with sigma drawn
    uniformly from `sigmas`; the result is clamped to [0, 1] (Yan et al. 2020, "On Robustness of
    Neural ODEs": their released code, HanshuYAN/TisODE mnist/MiscTools.py and main_ode_gaus.py,
    clamps, and noises half the images with sigma from {50, 75, 100}/255)."""

    sigmas: tuple[float, ...]
    p: float = 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        n = x.shape[0]
        sigma = torch.tensor(self.sigmas, dtype=x.dtype)[torch.randint(len(self.sigmas), (n,))]
        scale = torch.where(torch.rand(n) < self.p, sigma, 0.0).view(n, *[1] * (x.dim() - 1))
        return (x + (scale * torch.randn(x.shape, dtype=x.dtype)).to(x.device)).clamp(0, 1)


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirrors each image left-right with probability 1/2."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        flip = (torch.rand(x.shape[0]) < 0.5).to(x.device).view(-1, *[1] * (x.dim() - 1))
        return torch.where(flip, x.flip(-1), x)


@dataclass(frozen=True)
class RandomCrop:
    """Pads each image with `pad` zeros per side and crops it back to its size at a random offset
    (one offset per image), as torchvision's RandomCrop(size, padding=pad) does, on the whole batch."""

    pad: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        n, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (self.pad,) * 4)
        dy, dx = (torch.randint(2 * self.pad + 1, (n,)).to(x.device) for _ in range(2))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return padded[batch, channels, rows, cols].contiguous(memory_format=torch.contiguous_format)


@dataclass(frozen=True)
class Compose:
    """Applies `steps` in order."""

    steps: tuple[Augment, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x


def _number(spec: str, text: str, what: str, high: float = math.inf) -> float:
    """`text` as a finite number in (0, high], else a one-line UserError naming `augment` and `what`."""
    try:
        value = parse_number(text)
    except (ValueError, ZeroDivisionError):
        value = math.nan
    if not (0 < value <= high and math.isfinite(value)):
        rule = "a positive number or fraction" + (f" <= {high:g}" if math.isfinite(high) else "")
        raise UserError(f"{option('augment')} '{spec}': {what} must be {rule}, got '{text}'; expected {AUGMENT_HELP}")
    return value


def _gaussian(spec: str, fields: Sequence[str]) -> GaussianNoise:
    if not 1 <= len(fields) <= 2 or not fields[0]:
        raise UserError(f"{option('augment')} '{spec}': expected {AUGMENT_HELP}")
    sigmas = tuple(_number(spec, text.strip(), "SIGMA") for text in fields[0].split(","))
    if len(fields) == 1:
        return GaussianNoise(sigmas)
    key, _, value = fields[1].partition("=")
    if key.strip() != "p":
        raise UserError(f"{option('augment')} '{spec}': unknown field '{fields[1]}'; expected {AUGMENT_HELP}")
    return GaussianNoise(sigmas, _number(spec, value.strip(), "p", high=1.0))


def _crop(spec: str, fields: Sequence[str]) -> RandomCrop:
    if len(fields) != 1 or not fields[0].isdigit() or int(fields[0]) < 1:
        raise UserError(f"{option('augment')} '{spec}': crop needs a padding of whole pixels >= 1, e.g. crop:4")
    return RandomCrop(int(fields[0]))


def _flip(spec: str, fields: Sequence[str]) -> HorizontalFlip:
    if fields:
        raise UserError(f"{option('augment')} '{spec}': flip takes no fields")
    return HorizontalFlip()


_KINDS = {"gaussian": _gaussian, "crop": _crop, "flip": _flip}


def parse_augment(spec: str) -> Augment | None:
    """'crop:4+flip' -> random crop then flip; 'gaussian:100/255' -> GaussianNoise((100/255,));
    'gaussian:50/255,100/255:p=0.5' -> noise on half the images with one of two sigmas; '' -> None.
    Anything else is a one-line UserError naming `augment`."""
    if not spec:
        return None
    steps = []
    for part in spec.split("+"):
        kind, *fields = [f.strip() for f in part.strip().split(":")]
        if kind not in _KINDS:
            raise UserError(f"{option('augment')} '{spec}': unknown augmentation '{kind}'; expected {AUGMENT_HELP}")
        steps.append(_KINDS[kind](spec, fields))
    return steps[0] if len(steps) == 1 else Compose(tuple(steps))
