"""PreAct-ResNet18 (He et al. 2016b): the adversarial-training baseline of paper Table 2 (E5).

Four stages of two pre-activation basic blocks (widths w, 2w, 4w, 8w; w = 64 as usual), a bare
3x3 conv stem and a BN-ReLU-pool-linear head. Blocks are Euler steps `y + h f(y)` with the
pre-activation residual function; stage transitions use a BN-less 1x1 projection shortcut on y.
"""
from __future__ import annotations

from ..data.base import DatasetInfo
from ..registry import MODELS
from .base import ImageClassifier
from .options import require_finite, require_positive
from .scheme_net import SchemeNet, preact_field


@MODELS.register("preact_resnet18", "PreAct-ResNet18 (He et al. 2016b), the adversarial-training baseline of Table 2")
def preact_resnet18(info: DatasetInfo, width: int = 64, h: float = 1.0) -> ImageClassifier:
    """PreAct-ResNet18 with base width `width` and step size `h` in every residual update."""
    require_positive("preact_resnet18", width=width)
    require_finite("preact_resnet18", h=h)
    widths = (width, 2 * width, 4 * width, 8 * width)
    body = SchemeNet(
        info.in_channels, info.num_classes, "euler", widths, (2, 2, 2, 2), preact_field, h, width, stem_norm=False
    )
    return ImageClassifier(info, body)
