"""PolyNet, FractalNet and RevNet as schemes (paper Sec. 3.3): one builder, presets as data.

Each family is a CIFAR-style 3-stage net (widths w/2w/4w, `blocks_per_stage` blocks per stage)
whose shape-keeping blocks are one step of its scheme (`schemes.py`) with step size `h`:

- PolyNet (Zhang et al. 2017), Sec. 3.3.1, Eq. 15: `poly` blocks `y + h f(y) + h f(h f(y))`. With
  h = 1 this is PolyNet's second-order poly-2 unit (one shared residual function); the paper
  reads it as a truncated backward-Euler step.
- FractalNet (Larsson et al. 2016), Sec. 3.3.2, Eq. 20: the paper relates FractalNet's expansion
  rule `f_{C+1} = 1/2 (f_C o f_C) + 1/2 f_1` to Heun's method; this model is that Heun form,
  `heun` blocks `y + h/2 (f(y) + f(y + h f(y)))`, with one shared f.
- RevNet (Gomez et al. 2017), Sec. 3.3.3: additive coupling on channel halves, `rev` blocks
  `y1 += h F(y2); y2 += h G(y1)`, i.e. forward Euler on the coupled system X' = F(Y), Y' = G(X)
  (Eq. 22). Activations are stored as usual (no memory-saving reconstruction); `width` must be even.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..data.base import DatasetInfo
from ..errors import UserError
from ..registry import MODELS
from .base import ImageClassifier
from .options import require_finite, require_positive
from .scheme_net import cifar_scheme_net
from .schemes import SCHEMES


@dataclass(frozen=True)
class FamilyPreset:
    """One registered family: its scheme (a `SCHEMES` name) and its `odebench list` description."""

    scheme: str
    description: str


FAMILY_PRESETS: dict[str, FamilyPreset] = {
    "polynet": FamilyPreset("poly", "PolyNet-style blocks (I + hF + (hF)^2) y, paper Sec. 3.3.1"),
    "fractalnet": FamilyPreset("heun", "FractalNet-style Heun/RK2 blocks y + h/2 (f(y) + f(y + h f(y))), "
                                       "paper Sec. 3.3.2"),
    "revnet": FamilyPreset("rev", "RevNet-style additive coupling (Euler on the coupled system), paper Sec. 3.3.3"),
}


def _make_builder(name: str, preset: FamilyPreset) -> Callable[..., ImageClassifier]:
    """The builder of family `name` (registry options come from its signature)."""

    def build(info: DatasetInfo, blocks_per_stage: int = 3, width: int = 16, h: float = 1.0) -> ImageClassifier:
        require_positive(name, blocks_per_stage=blocks_per_stage, width=width)
        require_finite(name, h=h)
        if SCHEMES[preset.scheme].coupled and width % 2:
            raise UserError(f"model '{name}': option 'width' must be even (coupling splits channels), got {width}")
        return ImageClassifier(info, cifar_scheme_net(info.in_channels, info.num_classes, preset.scheme,
                                                      blocks_per_stage, width, h))

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"CIFAR-style 3-stage net (widths w/2w/4w) whose shape-keeping blocks are `{preset.scheme}` steps."
    return build


for _name, _preset in FAMILY_PRESETS.items():
    MODELS.register(_name, _preset.description)(_make_builder(_name, _preset))
