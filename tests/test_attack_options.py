"""Attacks are configured by explicit options or configured copies, never changed by their callers:
an attack behaves as it was built, whoever used it before, and what it cost comes back as a result."""
from __future__ import annotations

import copy

import pytest
import torch

from robustbench_ode.evaluation.verdict import Cost, robust_mask
from robustbench_ode.registry import ATTACKS


def state(attack) -> dict:
    """A deep snapshot of an attack's attributes (tensors cloned)."""
    return copy.deepcopy(attack.__dict__)


def same_state(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def test_with_options_returns_a_configured_copy_and_leaves_the_attack_as_it_was():
    attack = ATTACKS.get("pgd").build(steps=5, seed=3)
    before = state(attack)
    other = attack.with_options(eot=4, early_stop=False, seed=9)
    assert (other.eot, other.early_stop, other.seed, other.steps) == (4, False, 9, 5)
    assert same_state(state(attack), before)
    with pytest.raises(AttributeError, match="no option"):
        attack.with_options(stepz=3)


@pytest.mark.parametrize("transfer", [False, True])
def test_a_verdict_leaves_the_attack_it_is_given_as_it_was(trained, digits, transfer):
    x, y = digits.test_x[:60], digits.test_y[:60]
    correct = trained(x).argmax(1) == y
    attack = ATTACKS.get("pgd").build(steps=5, step_size=0.02)
    before = state(attack)
    robust, unverified, cost = robust_mask(attack, trained, lambda p: trained(p).argmax(1), x, y, correct, 0.1, 16,
                                           torch.device("cpu"), rounds=2, transfer=transfer)
    assert same_state(state(attack), before)
    assert cost.grad_calls > 0 and attack.grad_calls == 0 and robust.sum() < correct.sum()
    again, _, cost_again = robust_mask(attack, trained, lambda p: trained(p).argmax(1), x, y, correct, 0.1, 16,
                                       torch.device("cpu"), rounds=2, transfer=transfer)
    assert torch.equal(again, robust) and cost_again == cost  # the same attack, the same verdict


def test_further_attacks_are_counted_in_the_cost_not_in_the_attack(trained, digits):
    x, y = digits.test_x[:60], digits.test_y[:60]
    correct = trained(x).argmax(1) == y
    attack = ATTACKS.get("pgd").build(steps=5, step_size=0.02)

    def rejects_batch_claims(points: torch.Tensor) -> torch.Tensor:
        """The re-check of all points says 'not fooled'; a single point is judged by the model."""
        return y[correct] if len(points) > 1 else trained(points).argmax(1)

    _, plain_unverified, plain = robust_mask(attack, trained, lambda p: trained(p).argmax(1), x, y, correct, 0.1, 64,
                                             torch.device("cpu"), rounds=2)
    _, unverified, cost = robust_mask(attack, trained, rejects_batch_claims, x, y, correct, 0.1, 64,
                                      torch.device("cpu"), rounds=2)
    assert plain_unverified == 0 and unverified > 0  # every batch claim fails its re-check once
    assert cost.grad_calls > plain.grad_calls and attack.grad_calls == 0
    assert Cost(1, 2, {"a": 1}) + Cost(3, 4, {"a": 2, "b": 0.5}) == Cost(4, 6, {"a": 3, "b": 0.5})
