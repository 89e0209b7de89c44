"""DI²-FGSM: iterative FGSM with random input diversity (Xie et al. 2019), optional momentum."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from ..registry import ATTACKS
from .ball import project
from .base import Attack, check_positive
from .losses import cross_entropy


def diversity_transform(gen: torch.Generator, height: int, width: int, rate: float) -> Callable[[Tensor], Tensor]:
    """One random input-diversity transform: resize up by a random amount, pad at a random offset.

    The image is resized (nearest, as in Xie et al.'s code) to side + r with r uniform in
    [0, pad) where pad = max(1, int(side * rate) - side), zero-padded to side + pad at a random
    position, then resized (bilinear) back to the input size so any model accepts it. The
    `max(1, ...)` keeps the transform alive on small images (8x8 digits: int(8.8) = 8).
    """
    pad = max(1, int(height * rate) - height)
    r = int(torch.randint(0, pad, (), generator=gen))
    top = int(torch.randint(0, pad - r + 1, (), generator=gen))
    left = int(torch.randint(0, pad - r + 1, (), generator=gen))

    def transform(x: Tensor) -> Tensor:
        resized = F.interpolate(x, size=(height + r, width + r), mode="nearest")
        padded = F.pad(resized, (left, pad - r - left, top, pad - r - top))
        return F.interpolate(padded, size=(height, width), mode="bilinear", align_corners=False)

    return transform


@ATTACKS.register("difgsm", "Xie et al. 2019 DI²-FGSM: iterative FGSM on randomly resized+padded inputs")
class DIFGSM(Attack):
    """Diverse-Inputs Iterative FGSM (Xie et al., "Improving Transferability of Adversarial
    Examples with Input Diversity", CVPR 2019). Norm: L∞.

    I-FGSM whose gradient, with probability `prob` per iteration, is taken through a random
    resize-and-pad of the input (`diversity_transform`). With `momentum` > 0 it is M-DI²-FGSM:
    g ← μ·g + ∇/||∇||1 (Dong et al. 2018, MI-FGSM) and the step follows sign(g). No random start.
    Success is judged on the untransformed input (an extra forward when the transform was used);
    each sample keeps its first adversarial iterate. With prob=0 and momentum=0 it is I-FGSM.

    Options:
        steps: iterations.
        step_size: L∞ step; 0 means eps / steps.
        prob: probability of transforming the input at an iteration.
        resize_rate: the padded side is int(side * resize_rate) (>= side + 1); must be >= 1.
        momentum: decay μ of the accumulated gradient (0: no momentum).
        seed: seed of the random transforms.

    Example::

        x_adv = ATTACKS.get("difgsm").build(prob=0.5)(model, x, y, eps=0.3)
    """

    name = "difgsm"
    norm = "linf"

    def __init__(
        self,
        *,
        steps: int = 10,
        step_size: float = 0.0,
        prob: float = 0.5,
        resize_rate: float = 1.1,
        momentum: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_positive(self.name, steps=steps)
        if not 0.0 <= prob <= 1.0:
            raise UserError(f"attack '{self.name}': prob must be in [0, 1], got {prob}")
        if resize_rate < 1.0 or momentum < 0.0 or step_size < 0.0:
            raise UserError(f"attack '{self.name}': needs resize_rate >= 1, momentum >= 0, step_size >= 0")
        self.steps = steps
        self.step_size = step_size
        self.prob = prob
        self.resize_rate = resize_rate
        self.momentum = momentum
        self.seed = seed

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed)  # scalar draws only, so on the CPU
        alpha = self.step_size if self.step_size > 0 else eps / self.steps
        record = self.track(model, x, y)
        idx = record.pending()
        if len(idx) == 0:
            return record.x_adv
        x0, yk, xk = x[idx], y[idx], x[idx]
        g = torch.zeros_like(xk)
        for step in range(self.steps + 1):
            if step == self.steps:
                logits = self.logits(model, xk)
            elif float(torch.rand((), generator=gen)) < self.prob:
                transform = diversity_transform(gen, x.shape[-2], x.shape[-1], self.resize_rate)
                _, grad = self.loss_grad(model, xk, yk, cross_entropy, transform)
                logits = self.logits(model, xk)
            else:
                logits, grad = self.loss_grad(model, xk, yk, cross_entropy)
            keep = record.record(idx, xk, self.succeeded(logits, yk))
            idx, x0, yk, xk = idx[keep], x0[keep], yk[keep], xk[keep]
            if step == self.steps or len(idx) == 0:
                break
            grad = grad[keep]
            if self.momentum > 0:
                l1 = grad.abs().flatten(1).sum(dim=1).clamp_min(1e-12)
                g = self.momentum * g[keep] + grad / l1.view(-1, *([1] * (grad.dim() - 1)))
                grad = g
            xk = project(xk + alpha * grad.sign(), x0, eps, "linf")
        record.finish(idx, xk)
        return record.x_adv
