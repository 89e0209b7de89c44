"""Specification of AutoAttack (`-a autoattack`), its targeted members APGD-T and FAB-T, and the
ODE extras: the ensemble is the per-sample worst case of its members, each member attacks only
what the previous ones left, counts and costs add up, and every point stays in the threat model.

Small budgets throughout so the file runs in well under a minute on one CPU thread."""
from __future__ import annotations

import copy
import time

import pytest
import torch
import torchattacks
from torch import Tensor, nn

from robustbench_ode.attacks import autoattack as autoattack_module
from robustbench_ode.attacks.apgd import APGD
from robustbench_ode.attacks.ball import lp_norm
from robustbench_ode.attacks.gradient_from import GradientFrom
from robustbench_ode.attacks.losses import dlr_targeted
from robustbench_ode.attacks.sampling import SampleRNG
from robustbench_ode.attacks.square import Square, _Draws
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
    assert (defaults["version"], defaults["eot_iter"]) == ("standard", 1 * 20)
    rand = entry.build(version="rand")
    assert [name for name, _ in rand.members()] == ["apgd-ce", "apgd-dlr"] and rand.eot == 20
    assert rand.with_options(eot=5).eot == 5 and rand.eot == 20  # an explicit --eot wins over eot_iter
    assert entry.build().eot == 1
    with pytest.raises(UserError, match="version"):
        entry.build(version="plus")


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
    assert set(attack.stats) == {f"{key}_{m}" for m in STANDARD for key in ("broken_by", "seconds")}
    assert sum(attack.stats[f"broken_by_{m}"] for m in STANDARD) == int(broken.sum())
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


def test_each_members_seconds_are_recorded_beside_what_it_broke(ensemble_run, trained, data):
    x, y = data
    attack = autoattack()
    t0 = time.perf_counter()
    attack(trained, x, y, EPS)
    wall = time.perf_counter() - t0
    seconds = {m: attack.stats[f"seconds_{m}"] for m in STANDARD}
    assert all(isinstance(v, float) and v >= 0 for v in seconds.values())
    assert 0 < sum(seconds.values()) <= wall + 1e-3
    assert seconds["square"] > 0  # Square ran on the survivors of the gradient members
    assert {k: v for k, v in attack.stats.items() if k.startswith("broken_by_")} == {
        k: v for k, v in ensemble_run[0].stats.items() if k.startswith("broken_by_")}  # the same verdicts


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
    eot = eot.with_options(eot=2)
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


def test_fab_t_breaks_exactly_what_torchattacks_fab_t_breaks_and_without_early_stop_returns_its_points(trained, data):
    # FAB-T runs torchattacks' targeted search step for step (cheaper bookkeeping): the same
    # samples fall; without early stopping every sample runs every step and the points are its own
    x, y = data
    for eps in (EPS, 0.15):
        ta = torchattacks.FAB(trained, norm="Linf", eps=eps, steps=20, n_restarts=1, multi_targeted=True, n_classes=4,
                              seed=0)
        x_ta = ta(x, y)
        ta_broken = correct(trained, x, y) & ~correct(trained, x_ta, y)
        assert 0 < ta_broken.sum() < correct(trained, x, y).sum()
        for early_stop in (True, False):
            attack = ATTACKS.get("fab").build(steps=20, targets=3)
            attack = attack.with_options(early_stop=early_stop)
            x_adv = attack(trained, x, y, eps)
            broken = correct(trained, x, y) & ~correct(trained, x_adv, y)
            assert torch.equal(broken, ta_broken), (eps, early_stop)
            assert (lp_norm(x_adv - x, "linf") <= eps + 1e-6).all()
            if not early_stop:
                assert torch.allclose(x_adv[broken], x_ta[broken], atol=1e-6)


def test_fab_t_costs_one_gradient_call_and_one_check_per_step_and_leaves_parameter_gradients_alone(trained, data):
    x, y = data[0][:32], data[1][:32]
    model = copy.deepcopy(trained)
    for p in model.parameters():
        p.grad = None
    counter = Counter(model)
    attack = ATTACKS.get("fab").build(steps=7, targets=3)
    x_adv = attack(counter, x, y, 1e-4)  # nothing falls within so small a ball: every sample runs every step
    n = int(correct(model, x, y).sum())
    assert torch.equal(x_adv, x)
    assert attack.grad_calls == counter.with_grad == n * 3 * 7
    assert attack.queries == counter.without_grad == len(x) + n * 3 * 7  # the clean check, then one per step
    assert all(p.grad is None for p in model.parameters())
    ATTACKS.get("fab").build(steps=2, targets=0)(model, x, y, EPS)  # untargeted: torchattacks' .backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def _propose_per_query(self, draws, rows, it, x0, xk, eps, side):
    """Square's proposal drawn query by query from the per-sample generator, redrawing the signs
    of every image the proposal would not change (the implementation before block draws)."""
    rng = self.rng(x0.device)[self._idx_of_rows[rows]]
    m, c, h, w = xk.shape
    top = rng.integers(h - side + 1, 1, it).view(m, 1, 1, 1)
    left = rng.integers(w - side + 1, 2, it).view(m, 1, 1, 1)
    ys, xs = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
    window = (ys >= top) & (ys < top + side) & (xs >= left) & (xs < left + side)
    signs = eps * rng.rademacher((c, 1, 1), 3, it, 0, like=xk)
    for attempt in range(1, 11):
        x_new = torch.where(window, (x0 + signs).clamp(0.0, 1.0), xk)
        same = (x_new == xk).flatten(1).all(dim=1)
        if not same.any():
            break
        signs = torch.where(same.view(-1, 1, 1, 1), eps * rng.rademacher((c, 1, 1), 3, it, attempt, like=xk), signs)
    return x_new


def test_squares_block_drawn_proposals_are_exactly_the_per_query_per_sample_draws(trained, data, monkeypatch):
    rng = SampleRNG(12345 + (7 << 32), torch.tensor([0, 5, 999, 2**31 + 3]))
    rows = torch.tensor([0, 2, 3])
    for channels in (1, 3, 40):
        draws = _Draws(rng, channels, block=16)
        for it in (0, 15, 16, 37, 4999, 3):
            top, left = draws.window(rows, it, (5, 7))
            assert torch.equal(top, rng[rows].integers(5, 1, it)) and torch.equal(left, rng[rows].integers(7, 2, it))
            bits = draws.sign_bits(rows, it)
            for attempt in (0, 1, 9):
                signs = rng[rows].rademacher((channels, 1, 1), 3, it, attempt, like=torch.zeros(1))
                assert torch.equal((2 * bits[:, attempt] - 1).float(), signs.view(len(rows), channels))
    # whole runs, on 8x8 digits (whose flat background makes many proposals change nothing: redraws)
    x, y = data[0][:40], data[1][:40]
    ids = torch.arange(100, 140)
    fast = Square(queries=300, p_init=0.8, seed=3)
    x_fast = fast(trained, x, y, EPS, ids=ids)
    original_run = Square.run

    def run(self, model, xb, yb, eps):
        self._idx_of_rows = torch.nonzero(correct(model, xb, yb)).flatten()  # the first proposal's samples
        return original_run(self, model, xb, yb, eps)

    monkeypatch.setattr(Square, "run", run)
    monkeypatch.setattr(Square, "_propose", _propose_per_query)
    slow = Square(queries=300, p_init=0.8, seed=3)
    assert torch.equal(slow(trained, x, y, EPS, ids=ids), x_fast)
    assert slow.queries == fast.queries


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
    members = STANDARD + ["pgd-surrogate", "spsa", "cw"]
    assert set(extras.stats) == {f"{key}_{m}" for m in members for key in ("broken_by", "seconds")}
    broken = int((~correct(model, x_adv, y)).sum())  # y: the model's own labels
    assert sum(extras.stats[f"broken_by_{m}"] for m in members) == broken
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
    assert "broken_by_pgd-surrogate" not in attack.stats and "seconds_pgd-surrogate" not in attack.stats
    assert {"broken_by_spsa", "broken_by_cw"} <= set(attack.stats)
    broken = correct(trained, x, y) & ~correct(trained, x_adv, y)
    assert sum(v for k, v in attack.stats.items() if k.startswith("broken_by_")) == int(broken.sum())


# --- the rand version ----------------------------------------------------------------------------


class _FlipGradient(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the gradient by `sign`."""

    @staticmethod
    def forward(ctx, x: Tensor, sign: float) -> Tensor:
        ctx.sign = sign
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return ctx.sign * grad, None


class SignFlip(nn.Module):
    """A planted random model: a linear classifier whose input gradient flips sign at every pass
    that differentiates (its outputs do not change), so consecutive gradient draws are exactly
    opposite and the mean of an even number of them is exactly 0."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)
        self.draws = 0

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.draws += 1
            x = _FlipGradient.apply(x, 1.0 if self.draws % 2 else -1.0)
        return self.linear(x.flatten(1))


class Noisy(nn.Module):
    """`model` with Gaussian input noise at every pass, in eval mode too (a randomised defence)."""

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))


def test_rand_version_averages_every_gradient_over_20_draws(digits, monkeypatch):
    x, y = digits.test_x[:16], digits.test_y[:16]
    grads: list[Tensor] = []
    original = APGD.loss_grad

    def spy(self, model, xb, yb, loss, transform=None):
        logits, grad = original(self, model, xb, yb, loss, transform)
        grads.append(grad)
        return logits, grad

    monkeypatch.setattr(APGD, "loss_grad", spy)
    model = SignFlip()
    counter = Counter(model)
    with torch.no_grad():  # its own labels, so that every sample is attacked
        y = model(x).argmax(dim=1)
    rand = ATTACKS.get("autoattack").build(version="rand", apgd_steps=5)
    rand(counter, x, y, EPS)
    assert len(grads) == 2 * 6  # APGD-CE and APGD-DLR: the start and 5 steps each
    assert all(float(g.abs().max()) == 0.0 for g in grads)  # +g and -g, 10 times each
    assert rand.grad_calls == counter.with_grad == 20 * sum(len(g) for g in grads)  # 20 passes per gradient
    # one draw per gradient (the standard version) follows that draw's gradient
    grads.clear()
    ATTACKS.get("autoattack").build(apgd_steps=5, targets=0, square_queries=2)(model, x, y, EPS)
    assert grads and all(float(g.abs().max()) > 0 for g in grads)


def test_rand_version_runs_apgd_dlr_only_on_what_apgd_ce_left_on_a_noisy_model(trained, data, monkeypatch):
    x, y = data[0][:48], data[1][:48]
    seen: list[tuple[str, int]] = []
    original = APGD.run

    def spy(self, model, xb, yb, eps):
        seen.append((self.loss.__name__, len(xb)))
        return original(self, model, xb, yb, eps)

    monkeypatch.setattr(APGD, "run", spy)
    torch.manual_seed(0)
    noisy = Noisy(trained, 0.02)
    attack = ATTACKS.get("autoattack").build(version="rand", apgd_steps=10, eot_iter=4)
    x_adv = attack(noisy, x, y, EPS)
    assert [name for name, _ in seen] == ["cross_entropy", "dlr"]
    assert seen[1][1] == seen[0][1] - attack.stats["broken_by_apgd-ce"]
    assert set(attack.stats) == {f"{key}_{m}" for m in ("apgd-ce", "apgd-dlr") for key in ("broken_by", "seconds")}
    assert attack.stats["broken_by_apgd-ce"] > 0
    assert (lp_norm(x_adv - x, "linf") <= EPS + 1e-6).all()
