"""Per-sample attack losses, all to be *maximised* by the attacker."""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of the true label."""
    return F.cross_entropy(logits, y, reduction="none")


def _true_and_best_other(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true, others.amax(dim=1)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """Carlini & Wagner (2017) logit margin max_{j≠y} z_j − z_y; positive means misclassified."""
    true, other = _true_and_best_other(logits, y)
    return other - true


def dlr(logits: Tensor, y: Tensor) -> Tensor:
    """Croce & Hein (2020) difference of logits ratio: the margin over z_π1 − z_π3 (scale-free)."""
    if logits.shape[1] < 3:
        raise UserError("the DLR loss needs at least 3 classes")
    top = logits.sort(dim=1, descending=True).values
    return margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Croce & Hein (2020) targeted DLR (APGD-T): (z_t − z_y) / (z_π1 − (z_π3 + z_π4) / 2).

    Maximising it pushes the target logit z_t above the true one, scaled as DLR. Needs >= 4 classes.
    """
    if logits.shape[1] < 4:
        raise UserError("the targeted DLR loss needs at least 4 classes")
    top = logits.sort(dim=1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    wanted = logits.gather(1, target[:, None]).squeeze(1)
    return (wanted - true) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


LOSSES = {"ce": cross_entropy, "margin": margin, "dlr": dlr}


def get_loss(
    name: str, owner: str, allowed: tuple[str, ...] = ("ce", "margin")
) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss called `name`, or a UserError naming the ones `owner` accepts."""
    if name not in allowed:
        raise UserError(f"attack '{owner}': loss must be one of {', '.join(allowed)}, got {name!r}")
    return LOSSES[name]
