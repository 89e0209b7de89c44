"""The per-sample verdict of a bounded attack, shared by the attack runner and the audit.

A sample is robust iff the model's decision is right on the clean input *and* on the point the
attack crafts. Misclassified samples are not attacked. A point the attack claims adversarial that
the decision does not confirm is attacked further, alone and with new seeds, before it may count
as robust (see `evaluation.runner` for why). Kept apart from the runner so that the audit
(`diagnostics/`) can use it without importing the runner and its result store.

Under torchrun the samples of a verdict are shared among the processes (`on_shards`): each
attacks its share, and every process gets all verdicts and the summed counters back. A sample's
attack sees its id (its index in the evaluated set) for its random numbers, so neither the batch
nor the process it lands in changes its verdict.

The attack given is never changed: each verdict attacks with configured copies
(`Attack.with_options`: no early stop for a transfer, new seeds for further attacks) and returns
what they cost (`Cost`), summed over copies and processes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from .. import distributed
from ..attacks.base import Attack, eval_mode
from ..models.base import batch_dependent, nfe_of

Progress = Callable[[int, int], None]
Decide = Callable[[Tensor], Tensor]  # points -> the model's predicted labels, on the CPU
VERIFY_ROUNDS = 3  # further attacks on a point that failed re-checking, each alone with a new seed
REFILL_BATCHES = 8  # a refilling attack is given this many batches at a time (progress is reported between)


@dataclass
class Cost:
    """What attacks cost: their `grad_calls`, `queries` and `stats` (per-sample counts; an
    ensemble's member seconds stay floats), summed with `+`."""

    grad_calls: int = 0
    queries: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, attack: Attack) -> "Cost":
        """The counters of `attack` (a copy made for one verdict, so counting from zero)."""
        return cls(int(attack.grad_calls), int(attack.queries),
                   {k: v if isinstance(v, float) else int(v) for k, v in attack.stats.items()})

    def __add__(self, other: "Cost") -> "Cost":
        stats = dict(self.stats)
        for k, v in other.stats.items():
            stats[k] = stats.get(k, 0) + v
        return Cost(self.grad_calls + other.grad_calls, self.queries + other.queries, stats)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int, device: torch.device,
            per_sample: bool = False) -> tuple[Tensor, list[int]]:
    """Predicted labels (on CPU) and the forward NFE of each batch (empty for non-ODE models).

    Runs in eval mode (restored afterwards); `per_sample` decides one image at a time (for models
    whose output depends on the batch).
    """
    preds, nfes = [], []
    batch_size = 1 if per_sample else batch_size
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            preds.append(model(x[i : i + batch_size].to(device)).argmax(1).cpu())
            nfe = nfe_of(model)
            if nfe is not None:
                nfes.append(nfe["nfe_forward"])
    return (torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)), nfes


def batched(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, batch_size: int, device: torch.device,
            progress: Progress | None = None) -> Tensor:
    """Apply `fn(x_batch, y_batch)` on the device batch by batch; concatenate results on the CPU."""
    out = []
    for i in range(0, len(x), batch_size):
        out.append(fn(x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)).cpu())
        if progress:
            progress(min(i + batch_size, len(x)), len(x))
    return torch.cat(out) if out else torch.zeros(0)


def craft(attack: Attack, model: nn.Module, x: Tensor, y: Tensor, eps: float, batch_size: int,
          device: torch.device, progress: Progress | None = None, ids: Tensor | None = None,
          known_correct: bool = False) -> tuple[Tensor, Tensor]:
    """Adversarial points batch by batch (on CPU), and the mask of those the attack claimed
    adversarial; `ids` name the samples for their random numbers (default 0..N-1).

    A refilling attack (`Attack.refills`) on a model whose outputs ignore the batch gets
    `REFILL_BATCHES` batches per call and keeps its batches of `batch_size` full from them.
    `known_correct`: the attack may skip its clean check (see `Attack`)."""
    ids = torch.arange(len(x)) if ids is None else ids
    refill = attack.refills and attack.eot == 1 and not batch_dependent(model)
    claims: list[Tensor] = []
    done = 0

    def one_batch(xb: Tensor, yb: Tensor) -> Tensor:
        nonlocal done
        x_adv = attack(model, xb, yb, eps, ids=ids[done : done + len(xb)], batch_size=batch_size,
                       known_correct=known_correct)
        done += len(xb)
        claimed = attack.claimed if attack.claimed is not None else torch.zeros(len(xb), dtype=torch.bool)
        claims.append(claimed.cpu())
        return x_adv

    x_adv = batched(one_batch, x, y, batch_size * REFILL_BATCHES if refill else batch_size, device, progress)
    return x_adv, (torch.cat(claims) if claims else torch.zeros(0, dtype=torch.bool))


def attack_further(attack: Attack, crafter: nn.Module, decide: Decide, x: Tensor, y: Tensor, x_adv: Tensor,
                   fooled: Tensor, failed: Tensor, eps: float, device: torch.device, rounds: int,
                   ids: Tensor | None = None) -> Cost:
    """Re-attack each point of `failed` on its own, up to `rounds` times with new seeds (copies of
    `attack`); update `x_adv` and `fooled` in place and return what the copies cost. Alone in its
    batch, the attack's success checks see exactly the decision that counts. `ids` as for `craft`."""
    ids = torch.arange(len(x)) if ids is None else ids
    base_seed = getattr(attack, "seed", None)
    rounds_of = [attack.with_options(**({} if base_seed is None else {"seed": base_seed + r}))
                 for r in range(1, rounds + 1)]
    for i in failed.tolist():
        for again in rounds_of:
            xi = again(crafter, x[i : i + 1].to(device), y[i : i + 1].to(device), eps, ids=ids[i : i + 1]).cpu()
            if bool(decide(xi)[0] != y[i]):
                x_adv[i], fooled[i] = xi[0], True
                break
    return sum((Cost.of(a) for a in rounds_of), Cost())


def on_shards(attack: Attack, model: nn.Module, n: int,
              work: Callable[[Tensor], tuple[Tensor, int, Cost]]) -> tuple[Tensor, int, Cost]:
    """`work(rows)` on this process's share of `n` samples (all of them in a single process):
    returns its per-row results from every process in sample order, and its counts and costs
    summed over processes.

    Samples are shared only when each one's result depends on nothing but itself: a
    batch-independent attack (`Attack.batch_independent`, no EOT) crafting on a batch-independent
    `model`. Otherwise (e.g. the Boundary Attack, whose Foolbox search draws for the whole batch)
    rank 0 does all the work while the others wait, so the numbers are a single process's.
    """
    if distributed.world_size() == 1:
        return work(torch.arange(n))
    split = attack.batch_independent and attack.eot == 1 and not batch_dependent(model)
    result, count, cost = work(distributed.shard(n, split))
    shares = distributed.all_gather((count, cost))
    return (distributed.gather_shards(result, n, split), sum(c for c, _ in shares),
            sum((share for _, share in shares), Cost()))


def robust_mask(attack: Attack, crafter: nn.Module, decide: Decide, x: Tensor, y: Tensor, correct: Tensor,
                eps: float, batch_size: int, device: torch.device, *, rounds: int, transfer: bool = False,
                progress: Progress | None = None, further: nn.Module | None = None) -> tuple[Tensor, int, Cost]:
    """Per-sample robustness to `attack` at `eps`, crafted on `crafter` and judged by `decide`.

    `correct` is the clean verdict. Returns the mask (correct and still right on the crafted point),
    how many claimed points `decide` did not confirm (each attacked further `rounds` times, on
    `further` when given: the fp32 model when `crafter` computes in bf16, so a point whose bf16
    claim the fp32 decision rejects gets a full-precision search), and what the attacks cost.
    `transfer`: `crafter` is another model, so the attack runs its whole budget on every sample
    and its claims (about the crafter) are not re-checked. Each sample's id for its random
    numbers is its index in `x`; under torchrun the samples are shared (`on_shards`).
    Where `crafter` is the fp32 model `further` (or no `further`) with batch-independent outputs,
    its clean decisions are `correct`'s, so the attack skips its own clean check (`known_correct`).
    """
    robust = correct.clone()
    idx = torch.nonzero(correct).flatten()  # misclassified samples need no attack
    if eps <= 0 or len(idx) == 0:
        return robust, 0, Cost()
    known_correct = (not transfer and further in (None, crafter) and attack.eot == 1
                     and not batch_dependent(crafter))

    def work(rows: Tensor) -> tuple[Tensor, int, Cost]:
        ids = idx[rows]
        xs, ys = x[ids], y[ids]
        crafting = attack.with_options(early_stop=False) if transfer else attack.with_options()
        x_adv, claimed = craft(crafting, crafter, xs, ys, eps, batch_size, device, progress, ids, known_correct)
        fooled = decide(x_adv) != ys
        if transfer:
            return fooled, 0, Cost.of(crafting)
        failed = torch.nonzero(claimed & ~fooled).flatten()
        cost = attack_further(attack, further or crafter, decide, xs, ys, x_adv, fooled, failed, eps, device,
                              rounds, ids)
        return fooled, len(failed), Cost.of(crafting) + cost

    fooled, unverified, cost = on_shards(attack, crafter, len(idx), work)
    robust[idx] = ~fooled
    return robust, unverified, cost
