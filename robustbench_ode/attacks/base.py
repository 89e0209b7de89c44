"""The attack contract: configure once, then `x_adv = attack(model, x, y, eps)` per batch.

Ideas from torchattacks (one class per attack, hyper-parameters in the constructor, one call) and
Foolbox 3 (keyword-only options; the success criterion kept apart from the attack).

- `model` is an `nn.Module` mapping [0, 1] pixels to logits (it normalises inside); attacks run it
  in eval mode and restore every submodule's previous mode afterwards.
- `x` is in [0, 1], `y` holds int64 labels, `eps` is a radius in pixel units in the attack's
  `norm` ("linf" or "l2"). The output is detached, within the eps-ball of `x` and in [0, 1].
- `kind` is "bounded" (returns a point for the given eps) or "minimal" (searches the smallest
  perturbation; such attacks add `minimal(model, x, y) -> (points, norms)` for a model already in
  eval mode, with norm `inf` where no adversarial was found, and `min_perturbation(model, x, y) ->
  (N,)`, and answer the uniform call by returning the found point where its norm is <= eps, and
  `x` elsewhere).

Cost counters, both per-sample evaluations summed over every batch (divide by N for a per-sample
average). They accumulate across calls; `reset_counters()` zeroes them.
- `grad_calls`: input-gradient evaluations, one forward + backward pass counts `len(batch)`.
- `queries`: forward-only evaluations (clean checks, success checks, gradient-free search).

EOT (Expectation over Transformation; Athalye et al. 2018): with `eot = k > 1`, every input
gradient is the mean over k forward/backward passes, so a randomised model (or a random input
transform such as DI²-FGSM's) is attacked through its expected loss rather than one random draw.
It costs k gradient calls per step and is an option of the instance: `attack.with_options(eot=k)`
returns a configured copy (callers never set an attack's attributes: an attack behaves as it was
built, whoever used it before).

What an attack reports besides its points:
- `claimed`: after a call, the per-sample mask of points the attack's *own* success check found
  adversarial (None for attacks that never check, e.g. FGSM). The runner re-checks each claimed
  point with the model's final decision and attacks further where the two disagree.
- `stats`: named per-sample counts accumulated over calls (e.g. the Boundary Attack's
  `failed_starts`, an ensemble's samples broken by each member); zeroed by `reset_counters()`.
- `early_stop` (default True): a sample leaves the search at its first adversarial iterate. False
  runs the whole budget on every sample and returns the last iterate: transfer attacks need it,
  because a point barely past the *source's* boundary is a weak point for the target.

Per-sample randomness: `attack(model, x, y, eps, ids=...)` names each sample (its index in the
evaluated set; default 0..N-1 for the call) and an attack draws each sample's random numbers
from `self.rng(x.device)` (`sampling.SampleRNG`: a function of seed, id and draw only). An attack
whose point for a sample therefore depends on nothing but the sample, its id and the seed sets
`batch_independent = True`: the batch size does not change its numbers, and under torchrun the
runner divides its samples among the processes (`evaluation.verdict.on_shards`); others (the
default, e.g. a third-party search with batch-wide randomness) run whole on rank 0.

Full batches (`refills = True`, PGD): called with `batch_size=B` on more than B samples, such an
attack sends at most B samples through the model at a time and fills each place a sample leaves
(broken early) with the next unattacked one, so the model always sees full batches. Each sample's
search is its own, so for a model whose outputs for a sample do not depend on the batch the points
are those of attacking every batch of B alone. Other attacks take all of `x` as one batch.
`known_correct=True`: the caller has checked, with the very decisions this attack's success checks
make (the same model in fp32, batch-independent), that every clean `x` is classified correctly, so
the attack skips its own clean check (one forward pass per sample) and starts attacking.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from ..errors import UserError
from .sampling import SampleRNG

NORMS = ("linf", "l2")
KINDS = ("bounded", "minimal")

LossFn = Callable[[Tensor, Tensor], Tensor]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run `model` in eval mode, then restore each submodule's own training flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def check_norm(norm: str, owner: str) -> str:
    """Validate a norm name (a UserError names the accepted ones)."""
    if norm not in NORMS:
        raise UserError(f"attack '{owner}': norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def check_positive(owner: str, **values: float) -> None:
    """Raise a UserError for any option that is not > 0."""
    for key, value in values.items():
        if not value > 0:
            raise UserError(f"attack '{owner}': option '{key}' must be positive, got {value}")


class FirstAdversarial:
    """Per-sample record of the first adversarial point an iterative attack reaches.

    The earliest successful iterate is kept and its sample leaves the batch, so it costs no more
    model calls and is never updated again: the result is the worst case over iterations, never
    weaker than the last iterate. Samples never fooled get their last iterate (`finish`), which
    is still inside the ball and is what a transfer to another model should see.
    """

    def __init__(self, x: Tensor, early_stop: bool = True) -> None:
        self.x_adv = x.clone()
        self.found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.early_stop = early_stop
        self.claimed = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def pending(self) -> Tensor:
        """Indices (into the batch) of samples not fooled yet."""
        return torch.nonzero(~self.found).flatten()

    def record(self, idx: Tensor, x_cand: Tensor, success: Tensor) -> Tensor:
        """Keep the candidates of samples `idx` that succeed; return the mask of those left.

        Without early stopping every sample stays (the mask is all True) and only `finish`
        stores points; `claimed` then tells whether the last recorded candidate succeeded.
        """
        if not self.early_stop:
            self.claimed[idx] = success
            return torch.ones_like(success)
        hit = idx[success]
        self.x_adv[hit] = x_cand[success]
        self.found[hit] = True
        self.claimed[hit] = True
        return ~success

    def finish(self, idx: Tensor, x_last: Tensor) -> None:
        """Give the samples `idx` that are still searching their last iterate.

        Without early stopping they are then done, so later restarts do not redo the full budget.
        """
        self.x_adv[idx] = x_last
        if not self.early_stop:
            self.found[idx] = True


class Attack:
    """Base class: validation, eval mode, counted model calls and the success criterion."""

    name: str = ""
    norm: str = "linf"
    kind: str = "bounded"
    uses_gradients: bool = True  # False for decision- and score-based attacks
    batch_independent: bool = False  # a sample's point depends only on it, its id and the seed
    refills: bool = False  # keeps its batches full from the queue of unattacked samples (see above)

    def __init__(self) -> None:
        self.grad_calls = 0
        self.queries = 0
        self.eot = 1
        self.early_stop = True
        self.stats: dict[str, int] = {}
        self.claimed: Tensor | None = None
        self.ids: Tensor = torch.zeros(0, dtype=torch.long)
        self.batch_size = 0  # of the current call: the most samples per model call
        self.known_correct = False  # of the current call: skip the clean check
        self._record: FirstAdversarial | None = None

    def with_options(self, **options: Any) -> "Attack":
        """A copy of this attack with `options` (existing attributes such as `eot`, `early_stop`,
        `seed`, `pool`) replaced and its counters at zero; this attack is left as it is."""
        unknown = sorted(k for k in options if k.startswith("_") or not hasattr(self, k))
        if unknown:
            raise AttributeError(f"attack '{self.name}' has no option {', '.join(unknown)}")
        attack = copy.copy(self)
        for key, value in options.items():
            setattr(attack, key, value)  # through a property's setter where the option is one
        attack.reset_counters()
        attack.claimed, attack._record = None, None
        return attack

    def reset_counters(self) -> None:
        """Zero `grad_calls`, `queries` and `stats`."""
        self.grad_calls = 0
        self.queries = 0
        self.stats = {}

    def count(self, key: str, n: int) -> None:
        """Add `n` to the named statistic `key` (see `stats`)."""
        self.stats[key] = self.stats.get(key, 0) + int(n)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, eps: float, *, ids: Tensor | None = None,
                 batch_size: int | None = None, known_correct: bool = False) -> Tensor:
        """Adversarial examples for (x, y) within the eps-ball of `x` in `self.norm`, in [0, 1].

        `ids`: each sample's id for its random numbers (default 0..N-1), see `rng`. `batch_size`:
        the most samples a refilling attack sends through the model at once (default: all);
        `known_correct`: every clean `x` is known to be classified correctly (module docstring)."""
        eps = float(eps)
        if eps < 0:
            raise UserError(f"attack '{self.name}': eps must be >= 0, got {eps}")
        if y.shape != (len(x),):
            raise ValueError(f"labels of shape {tuple(y.shape)} do not match a batch of {len(x)}")
        if ids is not None and ids.shape != (len(x),):
            raise ValueError(f"ids of shape {tuple(ids.shape)} do not match a batch of {len(x)}")
        self.ids = torch.arange(len(x)) if ids is None else ids.detach().cpu().long()
        self.batch_size = batch_size if batch_size and self.refills else len(x)
        self.known_correct = known_correct
        x = x.detach()
        self._record, self.claimed = None, None
        if eps == 0 or len(x) == 0:
            return x.clone()
        with eval_mode(model):
            x_adv = self.run(model, x, y.detach(), eps)
        if self._record is not None:
            self.claimed = self._record.claimed.clone()
        return x_adv.detach()

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        """The attack itself; called in eval mode with eps > 0."""
        raise NotImplementedError

    def rng(self, device: torch.device) -> SampleRNG:
        """The random numbers (computed on `device`) of the samples of the current call, one row per
        sample, from the attack's `seed` (0 without one) and their `ids`: the same for a sample
        whatever else is in its batch."""
        return SampleRNG(getattr(self, "seed", 0), self.ids.to(device))

    def succeeded(self, logits: Tensor, y: Tensor) -> Tensor:
        """Success criterion (untargeted misclassification); kept apart from the search."""
        return logits.argmax(dim=1) != y

    def logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """A forward-only model call, counted in `queries`."""
        self.queries += len(x)
        with torch.no_grad():
            return model(x)

    def loss_grad(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        loss: LossFn,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Logits of `transform(x)` and the gradient of the summed per-sample loss w.r.t. `x`.

        With `eot > 1` the gradient is averaged over that many passes (the logits are the last
        pass's). Counted in `grad_calls`. `torch.autograd.grad` leaves the parameters' `.grad` untouched.
        """
        self.grad_calls += len(x) * self.eot
        x = x.detach().requires_grad_(True)
        total = torch.zeros_like(x)
        with torch.enable_grad():
            for _ in range(self.eot):
                logits = model(transform(x) if transform is not None else x)
                (grad,) = torch.autograd.grad(loss(logits, y).sum(), x)
                total += grad
        return logits.detach(), (total / self.eot).detach()

    def track(self, model: nn.Module, x: Tensor, y: Tensor, clean: Tensor | None = None) -> FirstAdversarial:
        """Start a `FirstAdversarial` record: samples the clean input already fools are done
        (with `early_stop`; without it every sample runs the whole budget). `clean`: the clean
        logits when the caller already has them (from `logits`, so counted). Skipped for a call
        with `known_correct` (no clean input fools the model)."""
        record = FirstAdversarial(x, self.early_stop)
        if not self.known_correct:
            if clean is None:
                step = self.batch_size or len(x)
                clean = torch.cat([self.logits(model, x[i : i + step]) for i in range(0, len(x), step)])
            record.record(torch.arange(len(x), device=x.device), x, self.succeeded(clean, y))
        self._record = record
        return record
