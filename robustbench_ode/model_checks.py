"""Checks of a model before any attack, as AutoAttack's `checks.py` runs them: what would make an
evaluation wrong without any attack failing visibly.

- outputs that are probabilities or log-probabilities: cross-entropy on them has vanishing
  gradients, so gradient attacks stall and the model looks robust;
- randomness at evaluation (dropout that `eval()` does not switch off, a randomised defence): one
  gradient is one draw, so attacks need expectation over transformations (`--eot`);
- gradients computed inside the forward pass (a dynamic defence): the attack differentiates a
  different function from the one that decides;
- what a model that calls torchdiffeq / torchode itself integrates, and whether its adaptive
  solve makes an image's output depend on its batch-mates (then verdicts are made per image).

Each finding is one line on `odebench attack` and one row of `odebench audit`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from .models.intercept import Integrated
from .models.probe import probe

OK, WARN, FAIL = "pass", "warn", "fail"
PASSES = 5  # identical forward passes compared by the randomness check


@dataclass
class Finding:
    """One check's outcome on one model."""

    check: str  # "outputs", "randomness", "gradients in forward", "ODE solves"
    status: str  # pass | warn | fail
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)
    notice: bool = False  # worth a line on `attack` even when it passes (it changes how verdicts are made)


def output_kind(out: Tensor) -> str:
    """'probabilities', 'log-probabilities' or 'logits' for a batch of model outputs (N, classes)."""
    out = out.detach().double()
    if len(out) and bool((out >= 0).all()) and torch.allclose(out.sum(1), torch.ones(len(out), dtype=out.dtype), atol=1e-3):
        return "probabilities"
    if len(out) and bool((out <= 0).all()) and bool(out.logsumexp(1).abs().max() < 1e-3):
        return "log-probabilities"
    return "logits"


@contextlib.contextmanager
def _counting_gradients() -> Iterator[list[str]]:
    """Record calls of `torch.autograd.grad` and `Tensor.backward` made while the context is open."""
    calls: list[str] = []
    grad, backward = torch.autograd.grad, torch.Tensor.backward

    def counted_grad(*args: Any, **kwargs: Any) -> Any:
        calls.append("torch.autograd.grad")
        return grad(*args, **kwargs)

    def counted_backward(self: Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append("Tensor.backward")
        return backward(self, *args, **kwargs)

    torch.autograd.grad, torch.Tensor.backward = counted_grad, counted_backward
    try:
        yield calls
    finally:
        torch.autograd.grad, torch.Tensor.backward = grad, backward


def check_outputs(out: Tensor) -> Finding:
    """Logits, or (log-)probabilities that starve cross-entropy of gradient (`out`: one forward's outputs)."""
    kind = output_kind(out)
    if kind == "logits":
        return Finding("outputs", OK, "outputs are logits")
    return Finding("outputs", FAIL, f"outputs look like {kind} (rows {'sum' if kind == 'probabilities' else 'exp-sum'} "
                   "to 1): cross-entropy gradients vanish and attacks stall; return the logits (drop the final "
                   "softmax)", {"kind": kind})


def check_randomness(outs: Tensor) -> Finding:
    """The same images through `PASSES` identical forward passes (`outs`: their stacked outputs)
    must give the same outputs."""
    spread = float((outs - outs[0]).abs().max())
    scale = float(outs.abs().max()) or 1.0
    if spread <= 1e-5 * scale:
        return Finding("randomness", OK, f"{PASSES} identical forward passes agree")
    flips = int((outs.argmax(2) != outs[0].argmax(1)).any(0).sum())
    return Finding("randomness", WARN, f"outputs differ across {PASSES} identical forward passes (by up to "
                   f"{spread:.3g}; {flips} of {outs.shape[1]} decisions change): the model is random at evaluation "
                   "(dropout left on? a randomised defence?); attack it with --eot 20 (expectation over "
                   "transformations), or AutoAttack's rand version (-a autoattack --attack-arg version=rand)",
                   {"max |Δ|": round(spread, 6), "flips": flips})


def check_input_gradient(out: Tensor) -> Finding:
    """Gradient attacks need an output (`out`, of an input that requires grad) that depends
    differentiably on the input."""
    if isinstance(out, Tensor) and out.requires_grad:
        return Finding("input gradient", OK, "the output is differentiable in the input")
    return Finding("input gradient", FAIL, "the output has no gradient with respect to the input (a detach, a "
                   "no-grad block or a non-differentiable step in the forward): gradient attacks cannot run on it; "
                   "use gradient-free attacks (square, spsa, boundary) or give the model a differentiable "
                   "approximation of that step (BPDA)")


def check_inner_gradients(calls: list[str], n: int) -> Finding:
    """A forward pass (on `n` images) that computes gradients itself (`calls`) is a dynamic defence
    the attack does not see."""
    if not calls:
        return Finding("gradients in forward", OK, "the forward pass computes no gradients")
    return Finding("gradients in forward", WARN, f"the forward pass calls {', '.join(sorted(set(calls)))} "
                   f"({len(calls)} times on {n} images): a dynamic defence; gradient attacks differentiate "
                   "through it only approximately, so add gradient-free attacks (square, boundary) and adaptive ones",
                   {"calls": len(calls)})


def check_ode_solves(model: nn.Module, sample: Tensor) -> Finding | None:
    """What a model that calls torchdiffeq / torchode itself integrates; None for any other model."""
    if not any(isinstance(m, Integrated) for m in model.modules()):
        return None
    found = probe(model, sample)
    numbers: dict[str, Any] = {"solves": [s.to_dict() for s in found.solves]}
    text = f"integrates with {found.summary()}"
    if any(s.library == "torchdiffeq" and s.adaptive for s in found.solves):
        numbers |= {"batched vs alone max |Δ logit|": found.batch_max_diff, "decisions changed": found.batch_flips}
        return Finding("ODE solves", OK, f"{text}; torchdiffeq's adaptive step size is shared by the batch "
                       f"(batched vs alone: logits differ by up to {found.batch_max_diff:.2g}, {found.batch_flips} "
                       f"of {len(sample)} decisions change), so every verdict is made one image at a time", numbers,
                       notice=True)
    return Finding("ODE solves", OK, text, numbers)


def inspect_model(model: nn.Module, sample: Tensor) -> list[Finding]:
    """Every check on `model` (eval mode, [0, 1] pixels -> outputs) with a few dataset images."""
    with torch.no_grad():
        outs = torch.stack([model(sample).float() for _ in range(PASSES)])
    with torch.enable_grad(), _counting_gradients() as calls:  # one forward with an input that requires grad
        graded = model(sample.clone().requires_grad_(True))
    findings = [check_outputs(outs[0]), check_randomness(outs), check_input_gradient(graded),
                check_inner_gradients(calls, len(sample))]
    ode = check_ode_solves(model, sample)
    return findings + ([ode] if ode else [])
