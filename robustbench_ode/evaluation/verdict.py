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
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .. import distributed
from ..attacks.base import Attack, eval_mode
from ..models.base import batch_dependent, nfe_of

Progress = Callable[[int, int], None]
Decide = Callable[[Tensor], Tensor]  # points -> the model's predicted labels, on the CPU
VERIFY_ROUNDS = 3  # further attacks on a point that failed re-checking, each alone with a new seed


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
          device: torch.device, progress: Progress | None = None, ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Adversarial points batch by batch (on CPU), and the mask of those the attack claimed
    adversarial; `ids` name the samples for their random numbers (default 0..N-1)."""
    ids = torch.arange(len(x)) if ids is None else ids
    claims: list[Tensor] = []
    done = 0

    def one_batch(xb: Tensor, yb: Tensor) -> Tensor:
        nonlocal done
        x_adv = attack(model, xb, yb, eps, ids=ids[done : done + len(xb)])
        done += len(xb)
        claimed = attack.claimed if attack.claimed is not None else torch.zeros(len(xb), dtype=torch.bool)
        claims.append(claimed.cpu())
        return x_adv

    x_adv = batched(one_batch, x, y, batch_size, device, progress)
    return x_adv, (torch.cat(claims) if claims else torch.zeros(0, dtype=torch.bool))


def attack_further(attack: Attack, crafter: nn.Module, decide: Decide, x: Tensor, y: Tensor, x_adv: Tensor,
                   fooled: Tensor, failed: Tensor, eps: float, device: torch.device, rounds: int,
                   ids: Tensor | None = None) -> None:
    """Re-attack each point of `failed` on its own, up to `rounds` times with new seeds; update
    `x_adv` and `fooled` in place. Alone in its batch, the attack's success checks see exactly the
    decision that counts. `ids` as for `craft`."""
    ids = torch.arange(len(x)) if ids is None else ids
    base_seed = getattr(attack, "seed", None)
    for i in failed.tolist():
        for r in range(1, rounds + 1):
            if base_seed is not None:
                attack.seed = base_seed + r
            xi = attack(crafter, x[i : i + 1].to(device), y[i : i + 1].to(device), eps, ids=ids[i : i + 1]).cpu()
            if bool(decide(xi)[0] != y[i]):
                x_adv[i], fooled[i] = xi[0], True
                break
    if base_seed is not None:
        attack.seed = base_seed


def _counters(attack: Attack) -> dict[str, float]:
    """The attack's counts (and its members' seconds, kept as floats: summed over processes)."""
    return {"grad_calls": int(attack.grad_calls), "queries": int(attack.queries)} | {
        f"stats.{k}": v if isinstance(v, float) else int(v) for k, v in attack.stats.items()}


def on_shards(attack: Attack, model: nn.Module, n: int,
              work: Callable[[Tensor], tuple[Tensor, int]]) -> tuple[Tensor, int]:
    """`work(rows)` on this process's share of `n` samples (all of them in a single process):
    returns its per-row results from every process in sample order and its counts summed, and
    sets the attack's counters (`grad_calls`, `queries`, `stats`) to their sums over processes.

    Samples are shared only when each one's result depends on nothing but itself: a
    batch-independent attack (`Attack.batch_independent`, no EOT) crafting on a batch-independent
    `model`. Otherwise (e.g. the Boundary Attack, whose Foolbox search draws for the whole batch)
    rank 0 does all the work while the others wait, so the numbers are a single process's.
    """
    if distributed.world_size() == 1:
        return work(torch.arange(n))
    split = attack.batch_independent and attack.eot == 1 and not batch_dependent(model)
    before = _counters(attack)
    result, count = work(distributed.shard(n, split))
    after = _counters(attack)
    changes = distributed.all_gather(({k: v - before.get(k, 0) for k, v in after.items()}, count))
    totals = dict(before)
    for delta, _ in changes:
        for k, v in delta.items():
            totals[k] = totals.get(k, 0) + v
    attack.grad_calls, attack.queries = totals.pop("grad_calls"), totals.pop("queries")
    attack.stats = {k.removeprefix("stats."): v for k, v in totals.items()}
    return distributed.gather_shards(result, n, split), sum(c for _, c in changes)


def robust_mask(attack: Attack, crafter: nn.Module, decide: Decide, x: Tensor, y: Tensor, correct: Tensor,
                eps: float, batch_size: int, device: torch.device, *, rounds: int, transfer: bool = False,
                progress: Progress | None = None, further: nn.Module | None = None) -> tuple[Tensor, int]:
    """Per-sample robustness to `attack` at `eps`, crafted on `crafter` and judged by `decide`.

    `correct` is the clean verdict. Returns the mask (correct and still right on the crafted point)
    and how many claimed points `decide` did not confirm (each attacked further `rounds` times, on
    `further` when given: the fp32 model when `crafter` computes in bf16, so a point whose bf16
    claim the fp32 decision rejects gets a full-precision search).
    `transfer`: `crafter` is another model, so the attack runs its whole budget on every sample
    and its claims (about the crafter) are not re-checked. Each sample's id for its random
    numbers is its index in `x`; under torchrun the samples are shared (`on_shards`).
    """
    robust = correct.clone()
    idx = torch.nonzero(correct).flatten()  # misclassified samples need no attack
    if eps <= 0 or len(idx) == 0:
        return robust, 0
    if transfer:
        attack.early_stop = False

    def work(rows: Tensor) -> tuple[Tensor, int]:
        ids = idx[rows]
        xs, ys = x[ids], y[ids]
        x_adv, claimed = craft(attack, crafter, xs, ys, eps, batch_size, device, progress, ids)
        fooled = decide(x_adv) != ys
        if transfer:
            return fooled, 0
        failed = torch.nonzero(claimed & ~fooled).flatten()
        attack_further(attack, further or crafter, decide, xs, ys, x_adv, fooled, failed, eps, device, rounds, ids)
        return fooled, len(failed)

    fooled, unverified = on_shards(attack, crafter, len(idx), work)
    robust[idx] = ~fooled
    return robust, unverified
