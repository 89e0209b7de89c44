"""YOPO-m-n ("You Only Propagate Once", Zhang et al. 2019a): adversarial training at the cost of m
full forward/backward passes per batch instead of one per attack step.

Seen as a differential game, the adversary's perturbation η only enters the network through its
first layer z = f0(x + η). One full backward pass gives the co-state p = -∂L/∂z; with p frozen,
the adversary takes n cheap steps through f0 alone on the Hamiltonian H(η) = <p, f0(x + η)>
(descending H ascends the loss linearised at z). That is repeated m times per batch.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.ball import project
from ..errors import UserError
from ..models.base import ImageClassifier
from ..models.odenet import ODENet
from ..models.scheme_net import SchemeNet
from ..registry import METHODS
from .adversarial import require, uniform_noise
from .methods import TrainMethod

Layer = Callable[[Tensor], Tensor]


class PixelFirstLayer(nn.Module):
    """A classifier's first layer seen from [0, 1] pixels: its input normalisation, then `layer`."""

    def __init__(self, classifier: ImageClassifier, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.mean, self.std = classifier.mean, classifier.std  # plain attributes: the classifier owns them

    def forward(self, x: Tensor) -> Tensor:
        return self.layer((x - self.mean) / self.std)


def split_first_layer(model: nn.Module) -> tuple[PixelFirstLayer, Layer]:
    """(first, rest) with rest(first(x)) == model(x); `first` is the first conv in pixel space.

    Supported bodies: `SchemeNet` (every ResNet-family model: the first module of `stem`),
    `ODENet` (the first module of `downsample`) and any body with a `split_first()` method
    returning (first conv, the rest as a callable), as `models.yan2020`'s have. Other models are
    a UserError.
    """
    body = getattr(model, "body", None)
    if isinstance(model, ImageClassifier) and isinstance(body, SchemeNet):
        stem_rest = body.stem[1:]
        return PixelFirstLayer(model, body.stem[0]), lambda z: body.head(body.blocks(stem_rest(z)))
    if isinstance(model, ImageClassifier) and isinstance(body, ODENet):
        down_rest = body.downsample[1:]
        return PixelFirstLayer(model, body.downsample[0]), lambda z: body.head(body.block(down_rest(z)))
    if isinstance(model, ImageClassifier) and hasattr(body, "split_first"):
        first, rest = body.split_first()
        return PixelFirstLayer(model, first), rest
    raise UserError(
        f"training method 'yopo' needs a model whose first layer it can split off "
        f"(ResNet-family or Neural ODE classifiers); {type(body or model).__name__} has none"
    )


def hamiltonian(first: Layer, x_adv: Tensor, p: Tensor) -> Tensor:
    """H = <p, first(x_adv)>, summed over the batch."""
    return (first(x_adv) * p).sum()


def yopo_inner_update(first: Layer, x: Tensor, eta: Tensor, p: Tensor, eps: float, sigma: float, n: int) -> Tensor:
    """YOPO's n adversary steps with the co-state frozen: η ← Π(η − σ sign ∇_η H(x + η)), where Π
    projects x + η onto the L∞ eps-ball of x and [0, 1]. Only `first` is differentiated; parameter
    gradients are left untouched."""
    for _ in range(n):
        eta = eta.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(hamiltonian(first, x + eta, p), eta)
        eta = project(x + eta.detach() - sigma * grad.sign(), x, eps, "linf") - x
    return eta.detach()


@METHODS.register("yopo", "Zhang et al. 2019a YOPO-m-n: m full passes, n first-layer adversary steps each")
class YOPO(TrainMethod):
    """YOPO-m-n (Zhang et al., "You Only Propagate Once: Accelerating Adversarial Training via
    Maximal Principle", NeurIPS 2019), L∞.

    Per batch, from a uniform random start η in the eps-ball, m times: one full forward/backward at
    x + η accumulates the gradients of all layers after the first and yields p = -∂L/∂z; η takes n
    signed steps of size `sigma` on H with p frozen (`yopo_inner_update`); the first layer's weights
    accumulate the gradient of -H at the updated point. One optimiser step then uses the gradients
    summed over the m passes, as the official code does. BatchNorm stays in train mode throughout,
    also as the official code: the m passes are the training passes. Returned: the mean CE over the
    m passes and the logits of the last one.

    Defaults are paper Table 2's YOPO-5-3 (eps 8/255, sigma 2/255). Since gradients are summed
    over m passes, the official CIFAR-10 PreAct-ResNet18 recipe uses a smaller lr and far fewer
    epochs than PGD training: SGD momentum 0.9, weight decay 5e-4, lr 0.1·c/m (c = 4 in a public
    copy of the config: 0.08), 36 epochs with lr /10 at epochs 30 and 34; pass
    `--optimizer sgd --lr 0.08 --weight-decay 5e-4 --epochs 36`.
    """

    name = "yopo"
    supports_ddp = False  # it back-propagates through split-off layers, beside the model DDP wraps

    def __init__(self, m: int = 5, n: int = 3, eps: float = 8 / 255, sigma: float = 2 / 255) -> None:
        require(self.name, m >= 1, "m", m, ">= 1")
        require(self.name, n >= 1, "n", n, ">= 1")
        require(self.name, eps >= 0, "eps", eps, ">= 0")
        require(self.name, sigma > 0, "sigma", sigma, "> 0")
        self.m, self.n, self.eps, self.sigma = m, n, eps, sigma

    def train_step(self, model, optimizer, x, y):
        first, rest = split_first_layer(model)
        optimizer.zero_grad(set_to_none=True)
        eta = project(x + uniform_noise(x, self.eps), x, self.eps, "linf") - x
        loss_sum = torch.zeros((), device=x.device)
        for _ in range(self.m):
            with torch.no_grad():
                z = first(x + eta)
            z.requires_grad_(True)  # a leaf: the full backward stops here and leaves f0's weights alone
            logits = rest(z)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            p = -z.grad
            eta = yopo_inner_update(first, x, eta, p, self.eps, self.sigma, self.n)
            (-hamiltonian(first, x + eta, p)).backward()
            loss_sum += loss.detach()
        optimizer.step()
        return loss_sum.item() / self.m, logits.detach()
