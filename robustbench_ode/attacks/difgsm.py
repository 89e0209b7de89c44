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
from .sampling import SampleRNG


def diversity_transform(rng: SampleRNG, step: int, height: int, width: int, rate: float,
                        prob: float) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """Random input-diversity transforms of `step`, one per image (one row of `rng` each): with
    probability `prob` resize up by a random amount and pad at a random offset, else leave it.

    The image is resized (nearest, as in Xie et al.'s code) to side + r with r uniform in
    [0, pad) where pad = max(1, int(side * rate) - side), zero-padded to side + pad at a random
    position, then resized (bilinear) back to the input size so any model accepts it. The
    `max(1, ...)` keeps the transform alive on small images (8x8 digits: int(8.8) = 8). Returns
    the transform of a batch shaped like the images and the mask of images it changes.
    """
    pad = max(1, int(height * rate) - height)
    used = rng.uniform((), step, 0, dtype=torch.float64) < prob
    r = rng.integers(pad, step, 1)
    choices = zip(r.tolist(), rng.integers(pad - r + 1, step, 2).tolist(), rng.integers(pad - r + 1, step, 3).tolist())
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, (choice, on) in enumerate(zip(choices, used.tolist())):
        if on:
            groups.setdefault(choice, []).append(i)

    def transform(x: Tensor) -> Tensor:
        for (ri, ti, li), rows in groups.items():
            index = torch.tensor(rows, device=x.device)
            resized = F.interpolate(x[index], size=(height + ri, width + ri), mode="nearest")
            padded = F.pad(resized, (li, pad - ri - li, ti, pad - ri - ti))
            x = x.index_put((index,), F.interpolate(padded, size=(height, width), mode="bilinear", align_corners=False))
        return x

    return transform, used


@ATTACKS.register("difgsm", "Xie et al. 2019 DI²-FGSM: iterative FGSM on randomly resized+padded inputs")
class DIFGSM(Attack):
    """Diverse-Inputs Iterative FGSM (Xie et al., "Improving Transferability of Adversarial
    Examples with Input Diversity", CVPR 2019). Norm: L∞.

    I-FGSM whose gradient, with probability `prob` per image and iteration, is taken through a
    random resize-and-pad of the image (`diversity_transform`; drawn per image, so an image's
    attack does not depend on its batch, where Xie et al.'s code draws one per batch). With
    `momentum` > 0 it is M-DI²-FGSM: g ← μ·g + ∇/||∇||1 (Dong et al. 2018, MI-FGSM) and the step
    follows sign(g). No random start. Success is judged on the untransformed input (an extra
    forward of the images that were transformed); each sample keeps its first adversarial
    iterate. With prob=0 and momentum=0 it is I-FGSM.

    Options:
        steps: iterations.
        step_size: L∞ step; 0 means eps / steps.
        prob: probability of transforming an image at an iteration.
        resize_rate: the padded side is int(side * resize_rate) (>= side + 1); must be >= 1.
        momentum: decay μ of the accumulated gradient (0: no momentum).
        seed: seed of the random transforms.

    Example::

        x_adv = ATTACKS.get("difgsm").build(prob=0.5)(model, x, y, eps=0.3)
    """

    name = "difgsm"
    norm = "linf"
    batch_independent = True

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
        rng = self.rng(x.device)
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
            else:
                transform, used = diversity_transform(rng[idx], step, x.shape[-2], x.shape[-1], self.resize_rate,
                                                      self.prob)
                logits, grad = self.loss_grad(model, xk, yk, cross_entropy, transform)
                if used.any():  # success is judged on the untransformed images
                    logits[used] = self.logits(model, xk[used])
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
