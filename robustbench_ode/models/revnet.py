"""RevNet (Gomez et al. 2017) as a scheme: additive coupling on channel halves (paper Sec. 3.3.3).

Each shape-keeping block is `y1 += h F(y2); y2 += h G(y1)`, i.e. forward Euler on the coupled
system X' = F(Y), Y' = G(X) (Eq. 22). Activations are stored as usual (no memory-saving
reconstruction); `width` must be even.
"""
from __future__ import annotations

from ..data.base import DatasetInfo
from ..errors import UserError
from ..registry import MODELS
from .base import ImageClassifier
from .options import require_finite, require_positive
from .scheme_net import cifar_scheme_net


@MODELS.register("revnet", "RevNet-style additive coupling (Euler on the coupled system), paper Sec. 3.3.3")
def revnet(info: DatasetInfo, blocks_per_stage: int = 3, width: int = 16, h: float = 1.0) -> ImageClassifier:
    """CIFAR-style 3-stage net (widths w/2w/4w) whose shape-keeping blocks are `rev` steps."""
    require_positive("revnet", blocks_per_stage=blocks_per_stage, width=width)
    require_finite("revnet", h=h)
    if width % 2:
        raise UserError(f"model 'revnet': option 'width' must be even (coupling splits channels), got {width}")
    body = cifar_scheme_net(
        info.in_channels, info.num_classes, "rev", blocks_per_stage, width, h
    )
    return ImageClassifier(info, body)
