"""Specification of the attacks: the uniform call, the threat model, cost counting, and strength
checks on a linear model (closed forms) and on a small MLP trained on the embedded digits."""
from __future__ import annotations

import foolbox as fb
import pytest
import torch
from torch import Tensor, nn

from robustbench_ode.attacks.apgd import checkpoint_lengths
from robustbench_ode.attacks.ball import lp_norm
from robustbench_ode.attacks.base import KINDS, NORMS
from robustbench_ode.attacks.sampling import SampleRNG, random_in_ball
from robustbench_ode.errors import UserError
from robustbench_ode.registry import ATTACKS

ALL = ATTACKS.names()
GRADIENT_FREE = ["boundary", "spsa", "square"]
# small budgets so each call takes a fraction of a second on the digits MLP
FAST = {
    "apgd": {"steps": 10},
    "autoattack": {"apgd_steps": 10, "targets": 2, "fab_steps": 10, "square_queries": 50},
    "boundary": {"steps": 50},
    "cw": {"steps": 10},
    "fab": {"steps": 10, "targets": 2},
    "pgd": {"steps": 10},
    "spsa": {"steps": 5, "samples": 8},
    "square": {"queries": 50},
}
# non-default settings that take other code paths
VARIANTS = [
    ("apgd", {"loss": "dlr", "restarts": 2}),
    ("cw", {"kappa": 2.0}),
    ("difgsm", {"momentum": 1.0, "prob": 1.0}),
    ("pgd", {"norm": "l2", "step_size": 0.2, "loss": "margin", "restarts": 2}),
]
EPS = {"linf": 0.1, "l2": 1.0}
LARGE_EPS = {"linf": 0.3, "l2": 3.0}


def build(name: str, **options: object):
    return ATTACKS.get(name).build(**{**FAST.get(name, {}), **options})


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


class Probe(nn.Module):
    """Forwards to `model` and records, per call, the mode, grad state and batch size it saw."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[dict] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append(
            {"training": self.training, "grad": torch.is_grad_enabled() and x.requires_grad, "n": len(x)}
        )
        return self.model(x)


@pytest.fixture(scope="module")
def batch(digits) -> tuple[Tensor, Tensor]:
    return digits.test_x[:32], digits.test_y[:32]


def linear_two_class(n: int) -> tuple[nn.Module, Tensor, Tensor, Tensor, Tensor]:
    """A 2-class linear model on 8x8 inputs in [0.3, 0.7], labelled with its own predictions.

    Returns the model, x, y, the clean margins z_y − z_other (> 0) and ||w_1 − w_0||_1.
    """
    torch.manual_seed(0)
    linear = nn.Linear(64, 2)
    model = nn.Sequential(nn.Flatten(), linear)
    x = 0.3 + 0.4 * torch.rand(n, 1, 8, 8)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(dim=1)
    return model, x, y, margin_of(model, x, y), (linear.weight[1] - linear.weight[0]).abs().sum().item()


def margin_of(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        z = model(x)
    return z.gather(1, y[:, None]).squeeze(1) - z.gather(1, 1 - y[:, None]).squeeze(1)


# --- the uniform contract, for every registered attack --------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_every_attack_declares_its_contract(name):
    attack = build(name)
    assert attack.name == name
    assert attack.norm in NORMS and attack.kind in KINDS
    assert attack.grad_calls == 0 and attack.queries == 0
    assert type(attack).__doc__ and "Norm:" in type(attack).__doc__
    if attack.kind == "minimal":
        assert callable(attack.min_perturbation)


@pytest.mark.parametrize("name, options", [(name, {}) for name in ALL] + VARIANTS)
def test_every_attack_stays_in_the_eps_ball_and_the_pixel_box(name, options, trained, batch):
    x, y = batch
    attack = build(name, **options)
    eps = EPS[attack.norm]
    x_adv = attack(trained, x, y, eps)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert (lp_norm(x_adv - x, attack.norm) <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("name", ALL)
def test_eps_zero_returns_the_input_and_the_clean_accuracy(name, trained, batch):
    x, y = batch
    x_adv = build(name)(trained, x, y, 0.0)
    assert torch.equal(x_adv, x)
    assert accuracy(trained, x_adv, y) == accuracy(trained, x, y)


@pytest.mark.parametrize("name", ALL)
def test_attacks_run_in_eval_mode_and_restore_every_modules_mode(name, trained, batch):
    x, y = batch
    probe = Probe(trained)
    probe.train()
    trained.body[0].eval()  # a mixed configuration must come back exactly as it was
    before = [m.training for m in probe.modules()]
    attack = build(name)
    try:
        attack(probe, x, y, EPS[attack.norm])
        assert [m.training for m in probe.modules()] == before
    finally:
        probe.eval()
    assert probe.calls and not any(call["training"] for call in probe.calls)


@pytest.mark.parametrize("name", ALL)
def test_counters_account_for_every_model_evaluation(name, trained, batch):
    x, y = batch
    probe = Probe(trained)
    attack = build(name)
    attack(probe, x, y, EPS[attack.norm])
    assert attack.grad_calls + attack.queries == sum(call["n"] for call in probe.calls)
    assert attack.grad_calls == sum(call["n"] for call in probe.calls if call["grad"])
    attack(probe, x, y, EPS[attack.norm])
    assert attack.grad_calls + attack.queries == sum(call["n"] for call in probe.calls)  # accumulated
    attack.reset_counters()
    assert attack.grad_calls == attack.queries == 0


def test_bad_options_and_eps_are_user_errors(trained, batch):
    x, y = batch
    with pytest.raises(UserError):
        ATTACKS.get("pgd").build(norm="l3")
    with pytest.raises(UserError):
        ATTACKS.get("pgd").build(loss="hinge")
    with pytest.raises(UserError):
        ATTACKS.get("pgd").build(steps="0")
    with pytest.raises(UserError):
        build("fgsm")(trained, x, y, -0.1)


# --- closed forms on a linear model ------------------------------------------------------------


def test_fgsm_moves_a_linear_margin_by_eps_times_the_weight_gap_and_accuracy_follows():
    # for z = Wx + b with two classes, sign(∇x CE) = sign(w_other − w_y), so one FGSM step
    # changes the margin z_y − z_other by exactly −eps·||w_1 − w_0||_1 when no clamp binds
    model, x, y, m0, gap = linear_two_class(400)
    ratios = (m0 / gap).sort().values
    eps = ((ratios[199] + ratios[200]) / 2).item()  # half the samples should survive
    assert eps <= 0.2  # x ± eps stays inside [0.1, 0.9]: the [0, 1] clamp cannot bind
    assert (m0 - eps * gap).abs().min() > 1e-4  # no sample so close to the threshold that rounding decides
    x_adv = build("fgsm")(model, x, y, eps)
    assert torch.allclose(margin_of(model, x_adv, y) - m0, torch.full_like(m0, -eps * gap), atol=1e-5)
    predicted = (m0 > eps * gap).float().mean().item()
    assert 0 < predicted < 1
    assert accuracy(model, x_adv, y) == predicted


def test_iterative_attacks_keep_the_first_adversarial_iterate_and_stop_paying_for_it():
    # without a random start every PGD step lowers the linear margin by d = step·gap, so sample i
    # is first misclassified after k_i = floor(m_i / d) + 1 steps; it must stop there
    model, x, y, m0, gap = linear_two_class(400)
    steps = 20
    step = (m0 / gap).median().item() / 10.5
    assert steps * step <= 0.3  # never leaves [0, 1]; eps below does not bind either
    steps_needed = m0 / (step * gap)
    assert (steps_needed - steps_needed.round()).abs().min() > 1e-3  # rounding cannot decide a k_i
    attack = build("pgd", random_start=False, step_size=step, steps=steps)
    x_adv = attack(model, x, y, 1.25 * steps * step)
    k = torch.floor(steps_needed) + 1
    moved = lp_norm(x_adv - x, "linf")
    assert torch.allclose(moved, step * k.clamp(max=steps), atol=1e-5)
    fooled = k <= steps
    assert 0 < fooled.sum() < len(x)
    assert (margin_of(model, x_adv, y)[fooled] < 0).all()
    # gradients at x_0..x_k for a sample fooled at step k < steps; then no more calls
    assert attack.grad_calls == int((k + 1).clamp(max=steps).sum())
    assert attack.grad_calls < steps * len(x)
    # queries: the clean check for all, the final check for those still unfooled after the last step
    assert attack.queries == len(x) + int((k >= steps).sum())


@pytest.mark.parametrize("name", ["apgd", "cw", "difgsm", "pgd"])
def test_finished_samples_cost_no_more_gradient_calls(name, trained, batch):
    x, y = batch
    attack = build(name, steps=20)
    x_adv = attack(trained, x, y, LARGE_EPS[attack.norm])
    attacked = round(accuracy(trained, x, y) * len(x))  # the clean check settles the rest
    assert accuracy(trained, x_adv, y) < 0.5
    assert attack.grad_calls < 20 * attacked


def test_difgsm_without_diversity_or_momentum_is_ifgsm_bit_for_bit(trained, batch):
    x, y = batch
    eps, steps = 0.1, 10
    ifgsm = build("pgd", random_start=False, step_size=eps / steps, steps=steps)  # Kurakin's BIM
    di = build("difgsm", prob=0.0, steps=steps)
    assert torch.equal(di(trained, x, y, eps), ifgsm(trained, x, y, eps))
    assert di.grad_calls == ifgsm.grad_calls
    assert not torch.equal(build("difgsm", prob=1.0, steps=steps)(trained, x, y, eps), ifgsm(trained, x, y, eps))


# --- strength on a trained model ---------------------------------------------------------------


def test_pgd_is_at_least_as_strong_as_fgsm(trained, digits):
    x, y = digits.test_x[:100], digits.test_y[:100]
    eps = 0.1
    assert accuracy(trained, build("pgd", steps=40)(trained, x, y, eps), y) <= accuracy(
        trained, build("fgsm")(trained, x, y, eps), y
    )


def test_pgd_robust_accuracy_never_rises_with_eps(trained, digits):
    x, y = digits.test_x[:100], digits.test_y[:100]
    grid = [0.0, 0.025, 0.05, 0.1, 0.2, 0.3]
    accs = [accuracy(trained, build("pgd", steps=40)(trained, x, y, eps), y) for eps in grid]
    assert accs[0] == accuracy(trained, x, y)
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0] / 2


def test_apgd_is_at_least_as_strong_as_pgd40(trained, digits):
    x, y = digits.test_x[:100], digits.test_y[:100]
    eps = 0.075
    apgd = accuracy(trained, build("apgd", steps=100)(trained, x, y, eps), y)
    pgd = accuracy(trained, build("pgd", steps=40)(trained, x, y, eps), y)
    assert apgd <= pgd + 1 / len(y)


def test_pgd_agrees_with_foolbox_linf_pgd(trained, digits):
    x, y = digits.test_x[:200], digits.test_y[:200]
    eps, step, steps = 0.075, 0.01, 40
    ours = accuracy(trained, build("pgd", step_size=step, steps=steps)(trained, x, y, eps), y)
    reference = fb.attacks.LinfPGD(abs_stepsize=step, steps=steps, random_start=True)
    with torch.random.fork_rng():  # Foolbox draws its random start from the global RNG
        torch.manual_seed(0)
        _, _, success = reference(fb.PyTorchModel(trained, bounds=(0, 1)), x, y, epsilons=eps)
    theirs = 1 - success.float().mean().item()
    assert 0 < theirs < accuracy(trained, x, y)  # an eps where the comparison means something
    assert abs(ours - theirs) <= 0.02


def test_random_starts_repeat_with_the_seed_and_leave_the_global_rng_alone(trained, batch):
    x, y = batch
    state = torch.get_rng_state()
    first = build("pgd", steps=3)(trained, x, y, 0.1)
    assert torch.equal(first, build("pgd", steps=3)(trained, x, y, 0.1))
    assert not torch.equal(first, build("pgd", steps=3, seed=1)(trained, x, y, 0.1))
    assert torch.equal(state, torch.get_rng_state())


# --- gradient-free attacks ---------------------------------------------------------------------


@pytest.mark.parametrize("name", GRADIENT_FREE)
def test_gradient_free_attacks_never_ask_for_a_gradient(name, trained, batch):
    x, y = batch
    probe = Probe(trained)
    attack = build(name)
    attack(probe, x, y, EPS[attack.norm])
    assert attack.grad_calls == 0 and attack.queries > 0
    assert not any(call["grad"] for call in probe.calls)


@pytest.mark.parametrize("name, options", [("square", {"queries": 300}), ("spsa", {"steps": 20, "samples": 16})])
def test_score_based_attacks_beat_random_noise_of_the_same_size(name, options, trained, digits):
    x, y = digits.test_x[:40], digits.test_y[:40]
    eps = 0.15
    noise = random_in_ball(x, eps, "linf", SampleRNG(0, torch.arange(len(x))))
    attacked = build(name, **options)(trained, x, y, eps)
    assert accuracy(trained, attacked, y) < accuracy(trained, noise, y) - 0.3


def test_square_stays_within_its_query_budget(trained, batch):
    x, y = batch
    attack = build("square", queries=30)
    attack(trained, x, y, 0.05)
    assert attack.queries <= 30 * len(x)


def test_boundary_finds_minimal_perturbations_that_lower_accuracy(trained, digits):
    x, y = digits.test_x[:40], digits.test_y[:40]
    attack = build("boundary", steps=200)
    norms = attack.min_perturbation(trained, x, y)
    correct = trained(x).argmax(dim=1) == y
    assert (norms[~correct] == 0).all()
    assert torch.isfinite(norms).all() and (norms[correct] > 0).all()
    eps = norms[correct].median().item()
    x_adv = build("boundary", steps=200)(trained, x, y, eps)
    assert accuracy(trained, x_adv, y) == (norms > eps).float().mean().item() < accuracy(trained, x, y)


def test_boundary_repeats_with_its_seed_and_leaves_the_global_rng_alone(trained, batch):
    x, y = batch[0][:8], batch[1][:8]
    state = torch.get_rng_state()
    first = build("boundary", steps=30).min_perturbation(trained, x, y)
    assert torch.equal(first, build("boundary", steps=30).min_perturbation(trained, x, y))
    assert torch.equal(state, torch.get_rng_state())


def test_boundary_reports_inf_where_no_adversarial_exists_and_zero_where_already_wrong():
    class AlwaysZero(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.tensor([1.0, 0.0, 0.0]).expand(len(x), 3)

    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([0, 1, 0, 2])
    norms = build("boundary", steps=10).min_perturbation(AlwaysZero(), x, y)
    assert norms.tolist() == [float("inf"), 0.0, float("inf"), 0.0]


def test_apgd_checkpoints_follow_the_paper_for_100_steps():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06); checkpoints at 100·p_j <= 100
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    lengths = checkpoint_lengths(100)
    assert [sum(lengths[: j + 1]) for j in range(len(lengths))] == [round(100 * q) for q in p[1:]]
