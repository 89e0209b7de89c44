"""Full batches: a refilling attack (PGD) fills the places of samples that leave with unattacked
ones, and each sample's point, claim and cost stay those of attacking every batch alone: bit for
bit where the model's output for a sample does not depend on its batch (`OneByOne`; the zoo's
ResNet-20s in fp32 on a CPU were checked the same way), within float rounding where a matrix
product's blocking moves the last bit with the batch size (the digits MLP)."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from robustbench_ode.evaluation.verdict import REFILL_BATCHES, craft
from robustbench_ode.registry import ATTACKS

BATCH = 16
SETTINGS = [
    {"steps": 10, "step_size": 0.02},
    {"steps": 4, "step_size": 0.01, "restarts": 3, "seed": 5},
    {"norm": "l2", "steps": 6, "step_size": 0.2, "loss": "margin", "restarts": 2},
    {"steps": 5, "step_size": 0.02, "random_start": False},
]


class BatchSizes(nn.Module):
    """The model, recording the batch size of every gradient call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            self.sizes.append(len(x))
        return self.model(x)


class OneByOne(nn.Module):
    """The model applied to one sample at a time: outputs independent of the batch, bit for bit."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.model(x[i : i + 1]) for i in range(len(x))])


def alone(attack, model, x, y, eps):
    """The attack on each batch of BATCH samples by itself: points, claims."""
    points, claims = [], []
    for i in range(0, len(x), BATCH):
        ids = torch.arange(i, min(i + BATCH, len(x)))
        points.append(attack(model, x[i : i + BATCH], y[i : i + BATCH], eps, ids=ids))
        claims.append(attack.claimed)
    return torch.cat(points), torch.cat(claims)


@pytest.mark.parametrize("options", SETTINGS)
@pytest.mark.parametrize("early_stop", [True, False])
def test_refilled_batches_give_the_same_points_claims_and_costs(trained, digits, options, early_stop):
    x, y = digits.test_x[:100], digits.test_y[:100]
    eps = 0.5 if options.get("norm") == "l2" else 0.1
    for model, exact in [(OneByOne(trained), True), (trained, False)]:
        one = ATTACKS.get("pgd").build(**options).with_options(early_stop=early_stop)
        full = ATTACKS.get("pgd").build(**options).with_options(early_stop=early_stop)
        points, claims = alone(one, model, x, y, eps)
        refilled = full(model, x, y, eps, ids=torch.arange(len(x)), batch_size=BATCH)
        assert torch.equal(refilled, points) if exact else torch.allclose(refilled, points, rtol=0, atol=1e-6)
        assert torch.equal(full.claimed, claims)
        assert (full.grad_calls, full.queries) == (one.grad_calls, one.queries)
        assert 0 < int(claims.sum()) < len(x)  # some samples leave early, some search to the end


def test_refilled_batches_stay_full_while_samples_wait(trained, digits):
    x, y = digits.test_x[:200], digits.test_y[:200]
    model = BatchSizes(trained)
    attack = ATTACKS.get("pgd").build(steps=20, step_size=0.01)
    attack(model, x, y, 0.1, batch_size=BATCH)
    waiting = len(x) - BATCH  # samples not yet in the batch, before the first step
    full = 0
    while full < len(model.sizes) and model.sizes[full] == BATCH:
        full += 1
    assert full * BATCH >= waiting // 2  # many steps run on a full batch (samples leave early and are replaced)
    assert max(model.sizes) == BATCH and sum(model.sizes) == attack.grad_calls


def test_craft_refills_from_several_batches_and_keeps_each_samples_verdict(trained, digits):
    x, y = digits.test_x[:150], digits.test_y[:150]
    attack = ATTACKS.get("pgd").build(steps=10, step_size=0.02)
    points, claims = alone(attack, trained, x, y, 0.1)
    model = BatchSizes(trained)
    refilled, refilled_claims = craft(attack, model, x, y, 0.1, BATCH, torch.device("cpu"))
    assert torch.allclose(refilled, points, rtol=0, atol=1e-6) and torch.equal(refilled_claims, claims)
    assert len(x) > BATCH * REFILL_BATCHES and max(model.sizes) == BATCH  # two calls of the attack


def test_known_correct_skips_only_the_clean_check(trained, digits):
    x, y = digits.test_x[:100], digits.test_y[:100]
    right = trained(x).argmax(1) == y
    x, y = x[right], y[right]
    checked, skipped = (ATTACKS.get("pgd").build(steps=10, step_size=0.02) for _ in range(2))
    a = checked(trained, x, y, 0.1, batch_size=BATCH)
    b = skipped(trained, x, y, 0.1, batch_size=BATCH, known_correct=True)
    assert torch.allclose(a, b, rtol=0, atol=1e-6) and torch.equal(checked.claimed, skipped.claimed)
    assert skipped.grad_calls == checked.grad_calls and skipped.queries == checked.queries - len(x)


class Keeper(nn.Module):
    """The model, keeping every input it is given and a copy of it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.kept = model, []

    def forward(self, x: Tensor) -> Tensor:
        self.kept.append((x, x.detach().clone()))
        return self.model(x)


def test_points_given_to_the_model_are_never_changed_afterwards(trained, digits):
    model = Keeper(trained)
    ATTACKS.get("pgd").build(steps=10, step_size=0.02, restarts=2)(model, digits.test_x[:60], digits.test_y[:60], 0.1,
                                                                   batch_size=BATCH)
    assert len(model.kept) > 10 and all(torch.equal(x.detach(), copy) for x, copy in model.kept)
