"""Specification of AutoAttack (`-a autoattack`), its targeted members APGD-T and FAB-T, and the
ODE extras: the ensemble is the per-sample worst case of its members, each member attacks only
what the previous ones left, counts and costs add up, and every point stays in the threat model.

Small budgets throughout so the file runs in well under a minute on one CPU thread."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from robustbench_ode.attacks import autoattack as autoattack_module
from robustbench_ode.attacks.apgd import APGD
from robustbench_ode.attacks.ball import lp_norm
from robustbench_ode.attacks.gradient_from import GradientFrom
from robustbench_ode.attacks.losses import dlr_targeted
from robustbench_ode.attacks.square import Square
from robustbench_ode.errors import UserError
from robustbench_ode.registry import ATTACKS, MODELS

EPS = 0.075  # on the digits MLP: PGD-40 breaks some correctly classified samples, not all
SMALL = {"apgd_steps": 20, "targets": 3, "fab_steps": 20, "square_queries": 200}
EXTRAS = {"extra_steps": 10, "spsa_steps": 5, "spsa_samples": 8}
STANDARD = ["apgd-ce", "apgd-t", "fab-t", "square"]
MEMBERS_ALONE = {  # each member on its own, with the budget it has inside SMALL
    "apgd-ce": ("apgd", {"steps": 20}),
    "apgd-t": ("apgd", {"steps": 20, "targets": 3}),
    "fab-t": ("fab", {"steps": 20, "targets": 3}),
    "square": ("square", {"queries": 200, "p_init": 0.8}),
}


def autoattack(**options: object):
    return ATTACKS.get("autoattack").build(**{**SMALL, **options})


def correct(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1) == y


class Counter(nn.Module):
    """Forwards to `model`, adding up the samples it evaluates with and without input gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.with_grad = self.without_grad = 0

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.with_grad += len(x)
        else:
            self.without_grad += len(x)
        return self.model(x)


@pytest.fixture(scope="module")
def data(digits) -> tuple[Tensor, Tensor]:
    return digits.test_x[:100], digits.test_y[:100]


@pytest.fixture(scope="module")
def ensemble_run(trained, data):
    """One AutoAttack run on the trained MLP: (attack, x_adv)."""
    x, y = data
    attack = autoattack()
    return attack, attack(trained, x, y, EPS)


@pytest.fixture(scope="module")
def tiny_odenet(digits):
    """An untrained 4-channel Neural ODE (adaptive dopri5, t1 = 0.5) and 8 samples it labels itself."""
    torch.manual_seed(0)
    model = MODELS.get("odenet").build(digits.info, channels=4, conv_layers=1, t1=0.5, rtol=1e-2, atol=1e-2).eval()
    x = digits.test_x[:8]
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


# --- the protocol --------------------------------------------------------------------------------


def test_defaults_are_the_standard_version_and_only_linf_is_accepted():
    entry = ATTACKS.get("autoattack")
    defaults = {name: opt.default for name, opt in entry.options.items()}
    assert {k: defaults[k] for k in ("norm", "apgd_steps", "targets", "fab_steps", "square_queries", "seed",
                                     "ode_extras")} == {"norm": "linf", "apgd_steps": 100, "targets": 9,
                                                        "fab_steps": 100, "square_queries": 5000, "seed": 0,
                                                        "ode_extras": False}
    attack = entry.build()
    assert attack.kind == "bounded" and attack.norm == "linf" and attack.uses_gradients
    assert [name for name, _ in attack.members()] == STANDARD
    assert [name for name, _ in entry.build(ode_extras="true").members()] == STANDARD + ["pgd-surrogate", "spsa", "cw"]
    with pytest.raises(UserError, match="linf"):
        entry.build(norm="l2")
    with pytest.raises(UserError):
        entry.build(targets=-1)


def test_autoattack_is_never_weaker_than_any_member_alone_nor_than_pgd40(ensemble_run, trained, data):
    x, y = data
    attack, x_adv = ensemble_run
    clean = int(correct(trained, x, y).sum())
    robust = int((correct(trained, x, y) & correct(trained, x_adv, y)).sum())
    pgd = ATTACKS.get("pgd").build(steps=40, step_size=0.01)
    pgd_robust = int(correct(trained, pgd(trained, x, y, EPS), y).sum())
    assert 0 < pgd_robust < clean  # an eps where the comparison means something
    assert robust <= pgd_robust
    for member, (name, options) in MEMBERS_ALONE.items():
        alone = int(correct(trained, ATTACKS.get(name).build(**options)(trained, x, y, EPS), y).sum())
        assert robust <= alone, member


def test_broken_by_counts_add_up_to_the_correct_samples_the_ensemble_breaks(ensemble_run, trained, data):
    x, y = data
    attack, x_adv = ensemble_run
    clean_ok = correct(trained, x, y)
    broken = clean_ok & ~correct(trained, x_adv, y)  # misclassified clean samples are not "broken"
    assert 0 < broken.sum() < clean_ok.sum()
    assert set(attack.stats) == {f"broken_by_{m}" for m in STANDARD}
    assert sum(attack.stats.values()) == int(broken.sum())
    assert attack.stats["broken_by_apgd-ce"] > 0
    # the claimed mask is the model's own verdict: every broken sample, plus the clean failures
    assert torch.equal(attack.claimed, ~correct(trained, x_adv, y))


def test_every_point_stays_in_the_eps_ball_and_the_pixel_box(ensemble_run, trained, data):
    x, y = data
    _, x_adv = ensemble_run
    extras = autoattack(ode_extras=True, **EXTRAS)(trained, x, y, EPS)
    for points in (x_adv, extras):
        assert points.shape == x.shape and not points.requires_grad
        assert (lp_norm(points - x, "linf") <= EPS + 1e-6).all()
        assert points.min() >= 0 and points.max() <= 1


def test_each_member_attacks_only_the_samples_the_previous_ones_left(trained, data, monkeypatch):
    x, y = data
    seen: list[int] = []
    original = Square.run

    def spy(self, model, xb, yb, eps):
        seen.append(len(xb))
        return original(self, model, xb, yb, eps)

    monkeypatch.setattr(Square, "run", spy)
    attack = autoattack()
    attack(trained, x, y, EPS)
    before_square = sum(attack.stats[f"broken_by_{m}"] for m in ("apgd-ce", "apgd-t", "fab-t"))
    assert seen == [int(correct(trained, x, y).sum()) - before_square]


def test_counters_add_up_every_members_model_evaluations(trained, data):
    x, y = data
    counter = Counter(trained)
    attack = autoattack(ode_extras=True, **EXTRAS)
    attack(counter, x[:32], y[:32], EPS)
    assert attack.grad_calls == counter.with_grad > 0
    assert attack.queries == counter.without_grad > 0


def test_the_ensembles_eot_reaches_every_gradient_member(trained, data):
    # a deterministic model: EOT over 2 passes gives the same gradients, so the same points at
    # exactly twice the gradient calls (forward-only queries unchanged)
    x, y = data[0][:32], data[1][:32]
    plain = autoattack(ode_extras=True, **EXTRAS)
    x_plain = plain(trained, x, y, EPS)
    eot = autoattack(ode_extras=True, **EXTRAS)
    eot.eot = 2
    assert torch.equal(eot(trained, x, y, EPS), x_plain)
    assert eot.grad_calls == 2 * plain.grad_calls > 0
    assert eot.queries == plain.queries


# --- the targeted members ------------------------------------------------------------------------


def test_targeted_dlr_is_positive_exactly_when_the_target_beats_the_true_class_and_scale_free():
    torch.manual_seed(0)
    logits = torch.randn(64, 10)
    y, target = torch.randint(0, 10, (64,)), torch.randint(0, 10, (64,))
    target = torch.where(target == y, (y + 1) % 10, target)
    loss = dlr_targeted(logits, y, target)
    gap = logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
    assert torch.equal(loss > 0, gap > 0)
    assert torch.allclose(dlr_targeted(3.0 * logits + 1.5, y, target), loss, atol=1e-5)
    with pytest.raises(UserError):
        dlr_targeted(logits[:, :3], y % 3, (y + 1) % 3)


def test_apgd_t_breaks_samples_within_the_ball_and_more_targets_never_break_fewer(trained, data):
    x, y = data
    clean_ok = correct(trained, x, y)
    robust = {}
    for k in (1, 3):
        attack = ATTACKS.get("apgd").build(steps=20, targets=k)
        x_adv = attack(trained, x, y, EPS)
        assert (lp_norm(x_adv - x, "linf") <= EPS + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
        robust[k] = clean_ok & correct(trained, x_adv, y)
    assert robust[1].sum() < clean_ok.sum()
    # the first target's run is the same in both; the others only attack what it left
    assert not (robust[3] & ~robust[1]).any()
    with pytest.raises(UserError):
        ATTACKS.get("apgd").build(targets=-1)


def test_apgd_t_aims_at_the_most_likely_wrong_classes_in_turn(trained, data, monkeypatch):
    x, y = data[0][:32], data[1][:32]
    with torch.no_grad():  # per sample, the other classes by decreasing clean logit
        ranked = trained(x).scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
    runs: list[tuple[Tensor, Tensor]] = []
    original = APGD._single_run

    def spy(self, model, record, idx, x0, yb, xk, eps, target=None):
        runs.append((idx.clone(), target.clone()))
        return original(self, model, record, idx, x0, yb, xk, eps, target)

    monkeypatch.setattr(APGD, "_single_run", spy)
    ATTACKS.get("apgd").build(steps=5, targets=3)(trained, x, y, EPS)
    assert len(runs) == 3  # one full run per target
    assert torch.equal(runs[0][0], torch.nonzero(correct(trained, x, y)).flatten())
    for rank, (idx, target) in enumerate(runs):
        assert torch.equal(target, ranked[idx, rank])
        assert (target != y[idx]).all()
    for (before, _), (after, _) in zip(runs, runs[1:]):  # a later target only gets what is left
        assert set(after.tolist()) <= set(before.tolist())
    assert len(runs[1][0]) < len(runs[0][0])  # the first target broke some


def test_fab_t_breaks_samples_within_the_ball_and_leaves_the_global_rng_alone(trained, data):
    x, y = data
    state = torch.get_rng_state()
    attack = ATTACKS.get("fab").build(steps=20, targets=3)
    x_adv = attack(trained, x, y, EPS)
    assert torch.equal(state, torch.get_rng_state())  # torchattacks reseeds it: we fork it
    assert (lp_norm(x_adv - x, "linf") <= EPS + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    clean_ok = correct(trained, x, y)
    assert (clean_ok & ~correct(trained, x_adv, y)).any()
    assert torch.equal(attack.claimed, ~correct(trained, x_adv, y))


def test_untargeted_fab_counts_one_backward_pass_per_class(trained, data):
    x, y = data[0][:16], data[1][:16]
    counter = Counter(trained)
    attack = ATTACKS.get("fab").build(steps=5, targets=0)
    x_adv = attack(counter, x, y, EPS)
    assert attack.grad_calls == 10 * counter.with_grad > 0  # digits: 10 classes
    assert attack.queries == counter.without_grad
    assert (lp_norm(x_adv - x, "linf") <= EPS + 1e-6).all()


# --- the ODE extras ------------------------------------------------------------------------------


def test_ode_extras_on_a_neural_ode_differentiate_through_rk4_at_a_tenth_of_t1(tiny_odenet, monkeypatch):
    model, x, y = tiny_odenet
    deciders: list[nn.Module] = []
    surrogates: list[dict] = []
    original = autoattack_module.solver_surrogate

    def spy(decider, **options):
        deciders.append(decider)
        surrogates.append(options)
        return original(decider, **options)

    monkeypatch.setattr(autoattack_module, "solver_surrogate", spy)
    budget = {"apgd_steps": 3, "targets": 2, "fab_steps": 3, "square_queries": 10}
    extras = ATTACKS.get("autoattack").build(ode_extras=True, extra_steps=3, spsa_steps=2, spsa_samples=4, **budget)
    x_adv = extras(model, x, y, 0.05)
    assert (lp_norm(x_adv - x, "linf") <= 0.05 + 1e-6).all()
    assert set(extras.stats) == {f"broken_by_{m}" for m in STANDARD + ["pgd-surrogate", "spsa", "cw"]}
    assert sum(extras.stats.values()) == int((~correct(model, x_adv, y)).sum())  # y: the model's own labels
    assert len(x) - sum(extras.stats[f"broken_by_{m}"] for m in STANDARD) > 0  # the extras had work to do
    assert deciders == [model] and surrogates[0]["solver"] == "rk4"
    assert surrogates[0]["step_size"] == pytest.approx(0.05)  # t1 / 10
    standard = ATTACKS.get("autoattack").build(**budget)
    standard(model, x, y, 0.05)
    assert extras.grad_calls > standard.grad_calls and extras.queries > standard.queries
    # behind --grad-solver the model arrives wrapped in GradientFrom: the wrapped ODE still decides
    wrapped = GradientFrom(model, model.with_solver("euler", step_size=0.25))
    ATTACKS.get("autoattack").build(ode_extras=True, extra_steps=2, spsa_steps=1, spsa_samples=2, apgd_steps=2,
                                    targets=1, fab_steps=2, square_queries=4)(wrapped, x[:2], y[:2], 0.05)
    assert deciders == [model, model]


def test_ode_extras_on_a_model_without_an_ode_solver_count_the_skipped_surrogate(trained, data):
    x, y = data[0][:32], data[1][:32]
    attack = autoattack(ode_extras=True, **EXTRAS)
    x_adv = attack(trained, x, y, EPS)
    left = int(correct(trained, x, y).sum()) - sum(attack.stats[f"broken_by_{m}"] for m in STANDARD)
    assert left > 0
    assert attack.stats["skipped_pgd-surrogate"] == left
    assert "broken_by_pgd-surrogate" not in attack.stats
    assert {"broken_by_spsa", "broken_by_cw"} <= set(attack.stats)
    broken = correct(trained, x, y) & ~correct(trained, x_adv, y)
    assert sum(v for k, v in attack.stats.items() if k.startswith("broken_by_")) == int(broken.sum())
