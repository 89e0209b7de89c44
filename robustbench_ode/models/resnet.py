"""ResNets with step size h (He et al. 2016): the Euler instances of `SchemeNet`.

Every residual update is `y + h f(y)` (paper Eq. 4; E1 trains ResNet56 for h = 1 ... 1e-10).
"""
from __future__ import annotations

from ..data.base import DatasetInfo
from ..registry import MODELS
from .base import ImageClassifier
from .options import require_finite, require_positive
from .scheme_net import SchemeNet, bottleneck_field, cifar_scheme_net


def _cifar_resnet(info: DatasetInfo, name: str, blocks: int, width: int, h: float) -> ImageClassifier:
    require_positive(name, width=width)
    require_finite(name, h=h)
    body = cifar_scheme_net(info.in_channels, info.num_classes, "euler", blocks, width, h)
    return ImageClassifier(info, body)


@MODELS.register("resnet56", "He et al. CIFAR ResNet-56 (3 stages x 9 basic blocks, 16/32/64), y + h f(y)")
def resnet56(info: DatasetInfo, h: float = 1.0, width: int = 16) -> ImageClassifier:
    """ResNet-56 of paper E1; `width` is the first stage's channels (16 as He et al.)."""
    return _cifar_resnet(info, "resnet56", 9, width, h)


@MODELS.register("resnet20", "He et al. CIFAR ResNet-20 (3 stages x 3 basic blocks), y + h f(y); CPU-sized")
def resnet20(info: DatasetInfo, h: float = 1.0, width: int = 16) -> ImageClassifier:
    """ResNet-20: the same family as ResNet-56 with 3 blocks per stage, for CPU presets."""
    return _cifar_resnet(info, "resnet20", 3, width, h)


@MODELS.register("resnet_small", "ResNet with three residual blocks (one per stage): E1's FGSM transfer source")
def resnet_small(info: DatasetInfo, h: float = 1.0, width: int = 16) -> ImageClassifier:
    """The 'other network with three residual blocks' on which E1 crafts transfer FGSM examples."""
    return _cifar_resnet(info, "resnet_small", 1, width, h)


@MODELS.register("resnet50", "ResNet-50 (bottlenecks [3,4,6,3]) with y + h f(y), 3x3 stride-1 stem for small images")
def resnet50(info: DatasetInfo, h: float = 1.0, width: int = 64) -> ImageClassifier:
    """Paper E2-E4's ResNet50: torchvision's stages (widths 4w..32w, w=`width`) with h in every update.

    The ImageNet stem (7x7 stride 2 + max-pool) is replaced by one 3x3 stride-1 conv so 8x8,
    28x28 and 32x32 inputs keep their resolution.
    """
    require_positive("resnet50", width=width)
    require_finite("resnet50", h=h)
    widths = (4 * width, 8 * width, 16 * width, 32 * width)
    body = SchemeNet(info.in_channels, info.num_classes, "euler", widths, (3, 4, 6, 3), bottleneck_field, h, width)
    return ImageClassifier(info, body)
