"""Specification of the Boundary Attack's starts: Foolbox's noise search, the fallback to the
nearest suitable image of a start pool, and samples with no start at all (distance inf, counted
in `stats["failed_starts"]`, never hidden)."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from robustbench_ode.attacks.ball import lp_norm
from robustbench_ode.attacks.boundary import Boundary
from robustbench_ode.registry import ATTACKS

STEPS = 40  # a short walk: these tests are about starts, not about how far the walk gets


def build(**options: object) -> Boundary:
    return ATTACKS.get("boundary").build(**{"steps": STEPS, **options})


def predict(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


class AlwaysZero(nn.Module):
    """Class 0 for every input: a sample labelled 0 can never be misclassified."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tensor([1.0] + [0.0] * 9).expand(len(x), 10)


class NoiseGate(nn.Module):
    """`model`'s decision on images with at least 16 pixels exactly 0 (every digit has >= 22), and
    class 0 on anything else. Uniform noise, and any blend of an image towards it, has no exact
    zeros, so the noise search can never fool the gate on a sample of class 0; another real digit
    the model classifies correctly can."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        real = (x == 0).flatten(1).sum(dim=1) >= 16
        noise = torch.zeros(len(x), 10)
        noise[:, 0] = 100.0
        return torch.where(real[:, None], self.model(x), noise)


class Counter(nn.Module):
    """Forwards to `model` and counts the samples it sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen = 0

    def forward(self, x: Tensor) -> Tensor:
        self.seen += len(x)
        return self.model(x)


@pytest.fixture(scope="module")
def gate(trained) -> nn.Module:
    return NoiseGate(trained).eval()


@pytest.fixture(scope="module")
def gated_batch(gate, digits) -> tuple[Tensor, Tensor, int]:
    """Correctly classified test digits: 3 of class 0 (no noise start) then 3 of other classes.

    Returns x, y and the number of class-0 samples."""
    x, y = digits.test_x, digits.test_y
    correct = predict(gate, x) == y
    zeros = torch.nonzero(correct & (y == 0)).flatten()[:3]
    others = torch.nonzero(correct & (y != 0)).flatten()[:3]
    assert len(zeros) == 3 and len(others) == 3
    sel = torch.cat([zeros, others])
    return x[sel], y[sel], len(zeros)


def nearest_suitable(model: nn.Module, pool: tuple[Tensor, Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Brute force: per sample, the nearest pool image of another label that `model` classifies
    correctly, and its L2 distance (inf and `x` where there is none)."""
    px, py = pool
    suitable = (py[None, :] != y[:, None]) & (predict(model, px) == py)[None, :]
    dist = torch.where(suitable, torch.cdist(x.flatten(1), px.flatten(1)), torch.inf)
    best, at = dist.min(dim=1)
    return torch.where(torch.isfinite(best).view(-1, 1, 1, 1), px[at], x), best


def failed_start_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "failed to draw sufficient random inputs" in str(w.message)]


def test_boundary_counts_a_sample_with_no_possible_start_as_a_failed_start(digits):
    x = digits.test_x[:4]
    y = torch.tensor([0, 3, 0, 0])  # the one labelled 3 is already misclassified
    attack = build()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        norms = attack.min_perturbation(AlwaysZero(), x, y)
    assert norms.tolist() == [float("inf"), 0.0, float("inf"), float("inf")]
    assert attack.stats == {"failed_starts": 3, "pool_starts": 0}
    assert failed_start_warnings(caught) == []  # counted, not printed
    attack.min_perturbation(AlwaysZero(), x, y)
    assert attack.stats["failed_starts"] == 6  # accumulates across calls
    attack.reset_counters()
    assert attack.stats == {}


def test_boundary_counts_a_failed_start_when_no_pool_image_is_suitable(digits):
    # every pool image of another class is misclassified (as 0), those of class 0 share the label
    x, y = digits.test_x[:3], torch.zeros(3, dtype=torch.long)
    attack = build()
    attack = attack.with_options(pool=(digits.test_x, digits.test_y))
    norms = attack.min_perturbation(AlwaysZero(), x, y)
    assert torch.isinf(norms).all()
    assert attack.stats == {"failed_starts": 3, "pool_starts": 0}


def test_boundary_without_a_pool_fails_where_noise_never_flips_the_label(gate, gated_batch):
    x, y, n_zero = gated_batch
    attack = build()
    norms = attack.min_perturbation(gate, x, y)
    assert torch.isinf(norms[:n_zero]).all()
    assert torch.isfinite(norms[n_zero:]).all() and (norms[n_zero:] > 0).all()
    assert attack.stats == {"failed_starts": n_zero, "pool_starts": 0}


def test_boundary_starts_from_the_nearest_correctly_classified_pool_image_of_another_class(
    gate, gated_batch, digits
):
    x, y, n_zero = gated_batch
    pool = (digits.test_x, digits.test_y)
    attack = build()
    attack = attack.with_options(pool=pool)
    x_adv, norms = attack.minimal(gate, x, y)
    assert torch.isfinite(norms).all() and (norms > 0).all()
    assert (predict(gate, x_adv) != y).all()
    assert torch.allclose(norms, lp_norm(x_adv - x, "l2"))
    assert ((x_adv >= 0) & (x_adv <= 1)).all()
    # only the samples the noise search failed on used the pool; the walk never leaves its start's distance
    assert attack.stats == {"failed_starts": 0, "pool_starts": n_zero}
    _, start_dist = nearest_suitable(gate, pool, x[:n_zero], y[:n_zero])
    assert (norms[:n_zero] <= start_dist + 1e-5).all()


def test_boundary_pool_start_is_the_brute_force_nearest_suitable_image_and_is_found_lazily(trained, digits):
    x, y = digits.test_x[:40], digits.test_y[:40]
    # relabel each sample's nearest image of another class so that the model gets it wrong (the
    # new label is neither its prediction nor the sample's): such images must be skipped
    px, py = digits.test_x, digits.test_y.clone()
    nearest = torch.where(py[None, :] != y[:, None], torch.cdist(x.flatten(1), px.flatten(1)), torch.inf).argmin(1)
    new = (predict(trained, px[nearest]) + 1) % 10
    new = torch.where(new == y, (new + 1) % 10, new)
    py[nearest] = new
    pool = (px, py)
    want, dist = nearest_suitable(trained, pool, x, y)
    assert torch.isfinite(dist).all() and not (want == px[nearest]).flatten(1).all(1).any()
    attack = build()
    attack = attack.with_options(pool=pool)
    starts, found = attack._pool_starts(trained, x, y, batch=len(x))
    assert found.all()
    assert torch.equal(starts, want)
    assert (predict(trained, starts) != y).all()
    # classifying the whole pool would cost len(pool) per call; distance order needs far fewer
    assert 0 < attack.queries < len(pool[0]) // 2


def test_boundary_counts_every_model_call_in_queries(gate, gated_batch, digits):
    x, y, _ = gated_batch
    counted = Counter(gate)
    attack = build()
    attack = attack.with_options(pool=(digits.test_x, digits.test_y))
    attack.min_perturbation(counted, x, y)
    assert attack.queries == counted.seen > STEPS * len(x)


def test_boundary_uniform_call_with_pool_starts_stays_in_the_eps_ball_and_in_unit_range(gate, gated_batch, digits):
    x, y, _ = gated_batch
    attack = build()
    attack = attack.with_options(pool=(digits.test_x, digits.test_y))
    found, norms = attack.minimal(gate, x, y)
    eps = norms.median().item()
    inside = norms <= eps
    assert inside.any() and not inside.all()
    attack = build()
    attack = attack.with_options(pool=(digits.test_x, digits.test_y))
    x_adv = attack(gate, x, y, eps)
    assert ((x_adv >= 0) & (x_adv <= 1)).all()
    assert (lp_norm(x_adv - x, "l2") <= eps + 1e-5).all()
    assert torch.equal(x_adv[inside], found[inside]) and torch.equal(x_adv[~inside], x[~inside])
    assert (predict(gate, x_adv)[inside] != y[inside]).all()
    assert torch.equal(attack.claimed, inside)


def test_boundary_with_a_pool_repeats_with_its_seed_and_leaves_the_global_rng_alone(gate, gated_batch, digits):
    x, y, _ = gated_batch
    runs = []
    for seed, global_seed in [(3, 1), (3, 2), (4, 1)]:
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        attack = build(seed=seed)
        attack = attack.with_options(pool=(digits.test_x, digits.test_y))
        runs.append((attack.min_perturbation(gate, x, y), attack.stats))
        assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not torch.equal(runs[0][0], runs[2][0])  # the seed, not the global state, drives the walk
