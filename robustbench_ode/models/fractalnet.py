"""FractalNet (Larsson et al. 2016) as a scheme: blocks are Heun/RK2 steps (paper Sec. 3.3.2, Eq. 20).

The paper relates FractalNet's expansion rule `f_{C+1} = 1/2 (f_C o f_C) + 1/2 f_1` to Heun's
method; this model is that Heun form, `y + h/2 (f(y) + f(y + h f(y)))`, with one shared f.
"""
from __future__ import annotations

from ..data.base import DatasetInfo
from ..registry import MODELS
from .base import ImageClassifier
from .options import require_finite, require_positive
from .scheme_net import cifar_scheme_net


@MODELS.register("fractalnet", "FractalNet-style Heun/RK2 blocks y + h/2 (f(y) + f(y + h f(y))), paper Sec. 3.3.2")
def fractalnet(info: DatasetInfo, blocks_per_stage: int = 3, width: int = 16, h: float = 1.0) -> ImageClassifier:
    """CIFAR-style 3-stage net (widths w/2w/4w) whose shape-keeping blocks are `heun` steps."""
    require_positive("fractalnet", blocks_per_stage=blocks_per_stage, width=width)
    require_finite("fractalnet", h=h)
    body = cifar_scheme_net(
        info.in_channels, info.num_classes, "heun", blocks_per_stage, width, h
    )
    return ImageClassifier(info, body)
