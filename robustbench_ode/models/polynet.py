"""PolyNet (Zhang et al. 2017) as a scheme: blocks `y + h f(y) + h f(h f(y))` (paper Sec. 3.3.1, Eq. 15).

With h = 1 this is PolyNet's second-order poly-2 unit (one shared residual function); the paper
reads it as a truncated backward-Euler step.
"""
from __future__ import annotations

from ..data.base import DatasetInfo
from ..registry import MODELS
from .base import ImageClassifier
from .options import require_finite, require_positive
from .scheme_net import cifar_scheme_net


@MODELS.register("polynet", "PolyNet-style blocks (I + hF + (hF)^2) y, paper Sec. 3.3.1")
def polynet(info: DatasetInfo, blocks_per_stage: int = 3, width: int = 16, h: float = 1.0) -> ImageClassifier:
    """CIFAR-style 3-stage net (widths w/2w/4w) whose shape-keeping blocks are `poly` steps."""
    require_positive("polynet", blocks_per_stage=blocks_per_stage, width=width)
    require_finite("polynet", h=h)
    body = cifar_scheme_net(
        info.in_channels, info.num_classes, "poly", blocks_per_stage, width, h
    )
    return ImageClassifier(info, body)
