"""Input-gradient health: whether autograd gives an input gradient at all (`interrupted_graph`),
how many cross-entropy gradients are zero, non-finite or vanishing, and whether autograd agrees
with finite differences of the logit margin (Athalye et al. 2018: shattered gradients; Carlini
et al. 2019, Sec. 5: compare against finite differences)."""
from __future__ import annotations

import statistics
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.base import eval_mode

VANISHING = 1e-12  # an L2 norm this small is rounding-level: the loss has saturated


@dataclass(frozen=True)
class GradientStats:
    """Shares of samples whose cross-entropy input gradient (what PGD follows) is exactly zero, has
    a NaN/inf, or has L2 norm < 1e-12 (zero included), and per-sample cosines between autograd
    and finite differences of the margin."""

    n: int
    zero: float
    nonfinite: float
    vanishing: float
    cosines: list[float]

    @property
    def median_cosine(self) -> float:
        return statistics.median(self.cosines) if self.cosines else float("nan")


@contextmanager
def full_fp32() -> Iterator[None]:
    """Disable TF32 for convolutions and matmuls (CUDA), restoring the previous flags.

    A central difference with step 1e-3 needs full float32: TF32 keeps a 10-bit mantissa, and on
    an H200 it dropped the median gradient/finite-difference cosine of a ResNet-20 to 0.56 and of
    a Neural ODE to 0.76 (0.995 on the CPU), a false masking warning.
    """
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def input_gradients(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 250) -> Tensor:
    """Gradient of each sample's cross-entropy w.r.t. its input, in eval mode, in batches."""
    grads = []
    with eval_mode(model), torch.enable_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].detach().requires_grad_(True)
            loss = F.cross_entropy(model(xb), y[i : i + batch_size], reduction="sum")
            grads.append(torch.autograd.grad(loss, xb)[0].detach())
    return torch.cat(grads) if grads else torch.zeros_like(x)


def _pair_margin(model: nn.Module, x: Tensor, y: Tensor, other: Tensor) -> Tensor:
    """z_other − z_y per sample: the Carlini-Wagner margin with the runner-up class held fixed,
    a smooth function of the logits that, unlike the cross-entropy, does not round to a constant
    in float32 on confidently classified samples."""
    logits = model(x)
    return logits.gather(1, other.view(-1, 1)).squeeze(1) - logits.gather(1, y.view(-1, 1)).squeeze(1)


def finite_difference_cosine(
    model: nn.Module, x: Tensor, y: Tensor, h: float, directions: int, gen: torch.Generator
) -> float:
    """Cosine between autograd and central-difference directional derivatives of one sample's
    margin z_j − z_y (j: the runner-up class at x). Call in eval mode.

    Directions are the coordinate axes when the input has at most `directions` pixels (so the
    full gradient is compared), else `directions` Gaussian ones (a random projection, which
    preserves the cosine in expectation). 0 when either side is all zero: a function that is
    flat under the probes carries no gradient signal for an attacker.
    """
    xb, yb = x.detach()[None], y.view(1)
    with torch.no_grad():
        other = model(xb).scatter(1, yb.view(1, 1), float("-inf")).argmax(dim=1)
    xg = xb.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_pair_margin(model, xg, yb, other).sum(), xg)
    d = x.numel()
    if d <= directions:
        v = torch.eye(d, dtype=x.dtype, device=x.device)
    else:
        v = torch.randn(directions, d, generator=gen, dtype=x.dtype).to(x.device)
        v = v / v.norm(dim=1, keepdim=True)
    v = v.view(-1, *x.shape)
    analytic = (v.flatten(1) @ grad.flatten()).double()
    yk, ok = yb.expand(len(v)), other.expand(len(v))
    with torch.no_grad():
        numeric = ((_pair_margin(model, x + h * v, yk, ok) - _pair_margin(model, x - h * v, yk, ok)) / (2 * h)).double()
    if analytic.norm() == 0 or numeric.norm() == 0:
        return 0.0
    return float(F.cosine_similarity(analytic, numeric, dim=0))


def gradient_stats(
    model: nn.Module, x: Tensor, y: Tensor, *, fd_samples: int = 8, fd_directions: int = 64,
    fd_step: float = 1e-3, seed: int = 0, batch_size: int = 250,
) -> GradientStats:
    """Gradient statistics over all of (x, y) and finite-difference cosines on the first `fd_samples`."""
    grad = input_gradients(model, x, y, batch_size)
    flat = grad.flatten(1)
    finite = torch.isfinite(flat).all(dim=1)
    norms = torch.where(finite, flat.nan_to_num().norm(dim=1), torch.zeros(len(flat), device=flat.device))
    gen = torch.Generator().manual_seed(seed)
    cosines = []
    with eval_mode(model), full_fp32():
        for i in range(min(fd_samples, len(x))):
            cosines.append(finite_difference_cosine(model, x[i], y[i], fd_step, fd_directions, gen))
    n = max(len(x), 1)
    return GradientStats(
        n=len(x),
        zero=float(((flat == 0).all(dim=1)).sum()) / n,
        nonfinite=float((~finite).sum()) / n,
        vanishing=float((finite & (norms < VANISHING)).sum()) / n,
        cosines=cosines,
    )


def interrupted_graph(model: nn.Module, x: Tensor) -> str | None:
    """Why autograd gives no input gradient for `model` at the first image of `x`, or None when it
    does: Pintor et al.'s "interrupted computational graph" (a detach, a no-grad block, a
    non-differentiable op such as argmax in the forward pass). Only its absence is checked here;
    whether the gradient is zero or wrong is `gradient_stats`' business."""
    xg = x[:1].detach().clone().requires_grad_(True)
    try:
        with eval_mode(model), torch.enable_grad():
            out = model(xg)
            if not out.requires_grad:
                return "the output has no autograd history (detached or computed without gradients)"
            (grad,) = torch.autograd.grad(out.float().sum(), xg, allow_unused=True)
    except RuntimeError as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        return f"backward failed: {str(exc).splitlines()[0]}"
    if grad is None:
        return "the output does not depend on the input in the autograd graph (the input is detached)"
    return None
