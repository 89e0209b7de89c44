"""ODE nets and their discrete twins (one Euler step = one residual block), Gaussian-noise training,
and the `strong` preset that compares the two with the same training budget."""
from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from robustbench_ode.data.base import DatasetInfo
from robustbench_ode.errors import UserError
from robustbench_ode.experiments.paper_specs import build
from robustbench_ode.experiments.presets import FAST, PRESETS, STRONG, STRONG_EPOCHS
from robustbench_ode.experiments.reproduce import reproduce
from robustbench_ode.models import build_model, nfe_of
from robustbench_ode.models.odenet import ODE_PRESETS, ODEClassifier
from robustbench_ode.progress import SILENT
from robustbench_ode.training.augment import parse_augment
from robustbench_ode.training.config import CONFIG, STATE, TrainConfig, trained_with
from robustbench_ode.training.trainer import Trainer

from .helpers import TINY, assert_same_weights, cut_and_resume, odebench
from .test_cli import one_line_error

MNIST_SHAPE = DatasetInfo("toy", "toy", 1, 28, 10, (0.5,), (0.25,))
NOISE = "gaussian:100/255"
ODES = [name for name, preset in ODE_PRESETS.items() if not preset.twin]


def seeded(name: str, **options: object) -> ODEClassifier:
    """A small (8-channel) registered ODE net on MNIST-shaped input, drawn from seed 0."""
    torch.manual_seed(0)
    return build_model(name, MNIST_SHAPE, channels=8, **options).eval()


@pytest.mark.parametrize("ode,twin", [("odenet_yan", {"name": "odenet_yan_twin"})]
                         + [(name, {"name": name, "twin": True}) for name in ODES])
def test_twins_share_every_parameter_name_and_shape_and_differ_only_in_the_blocks_solver(ode, twin):
    model, other = seeded(ode), seeded(**twin)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in other.state_dict().items()}
    mine, theirs = model.body.block.config, other.body.block.config
    assert (theirs.solver, theirs.step_size) == ("euler", 0.0)  # one step over the whole [0, t1]
    assert replace(mine, solver="euler", step_size=0.0) == theirs
    assert str(model.body.downsample) == str(other.body.downsample) and str(model.body.head) == str(other.body.head)


@pytest.mark.parametrize("name,twin", [("odenet_yan_twin", {}), ("odenet_mnist", {"twin": True})])
def test_the_twin_is_a_hand_written_residual_block_y_plus_t1_f_of_0_y_over_the_same_weights(name, twin):
    ode = seeded(name.removesuffix("_twin"), conv_layers=2)
    model = seeded(name, conv_layers=2, **twin)
    model.load_state_dict(ode.state_dict())  # strict: every layer of the ODE net fits its twin
    x = torch.rand(3, 1, 28, 28)
    body, t1 = model.body, model.body.block.config.t1
    with torch.no_grad():
        y = body.downsample((x - model.mean) / model.std)
        by_hand = body.head(y + t1 * body.block.func(torch.tensor(0.0), y))
        torch.testing.assert_close(model(x), by_hand)
        assert not torch.allclose(ode(x), by_hand)  # the ODE integrates the same f differently
    assert nfe_of(model)["nfe_forward"] == 1


def test_odenet_yan_downsamples_mnist_once_to_14x14_and_takes_ten_euler_steps_of_0_1():
    model = seeded("odenet_yan")
    x = torch.rand(2, 1, 28, 28)
    assert model.body.downsample(x).shape[-2:] == (14, 14)
    assert sum(isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2) for m in model.body.downsample.modules()) == 1
    with torch.no_grad():
        model(x)
    cfg = model.body.block.config
    assert (cfg.solver, cfg.t1, cfg.step_size) == ("euler", 1.0, 0.1)  # Yan et al.'s integration
    assert nfe_of(model)["nfe_forward"] == round(cfg.t1 / cfg.step_size)


@pytest.mark.parametrize("name", ODES)
def test_every_ode_preset_can_integrate_with_fixed_step_euler(name):
    t1 = ODE_PRESETS[name].t1
    model = seeded(name, conv_layers=1, solver="euler", step_size=t1 / 4)
    with torch.no_grad():
        model(torch.rand(1, 1, 28, 28))
    assert nfe_of(model)["nfe_forward"] == 4


def spy_inputs(trainer: Trainer) -> list[tuple[bool, torch.Tensor]]:
    """Record (training mode, input batch) of every forward call of the trainer's model."""
    calls: list[tuple[bool, torch.Tensor]] = []
    trainer.model.register_forward_pre_hook(lambda module, args: calls.append((module.training, args[0].clone())))
    return calls


def rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.flatten(1)}


@pytest.mark.parametrize("augment", ["", NOISE])
def test_gaussian_noise_reaches_training_steps_only_never_the_test_accuracy(tmp_path, augment):
    trainer = Trainer(TrainConfig(**(TINY | {"epochs": 1, "augment": augment})), tmp_path / "run")
    calls = spy_inputs(trainer)
    meta = trainer.run()
    train = torch.cat([x for training, x in calls if training])
    evaluated = torch.cat([x for training, x in calls if not training])
    clean = rows(trainer.splits.train_x)
    assert len(train) == len(trainer.splits.train_x)
    assert torch.equal(evaluated, trainer.splits.test_x)  # the final accuracy sees clean test images
    if augment:
        assert not rows(train) & clean and train.min() >= 0 and train.max() <= 1  # noisy, clamped to [0, 1]
    else:
        assert rows(train) == clean
    assert meta["training"]["augment"] == augment


def test_gaussian_noise_training_is_seeded_and_resumes_bit_identically(tmp_path):
    cfg = TINY | {"epochs": 2, "augment": NOISE}
    first = Trainer(TrainConfig(**cfg), tmp_path / "a")
    first.run()
    resumed = cut_and_resume(cfg, tmp_path / "b")
    clean = Trainer(TrainConfig(**(cfg | {"augment": ""})), tmp_path / "c")
    clean.run()
    assert_same_weights(first.model, resumed.model)
    assert any(not torch.equal(w, clean.model.state_dict()[k]) for k, w in first.model.state_dict().items())


def test_the_augmentation_is_part_of_a_runs_identity_and_older_runs_without_it_stay_valid(tmp_path):
    cfg = TrainConfig(**(TINY | {"epochs": 1, "augment": NOISE}))
    Trainer(cfg, tmp_path / "run").run()
    assert json.loads((tmp_path / "run" / CONFIG).read_text())["augment"] == NOISE
    assert trained_with(tmp_path / "run", cfg) and not trained_with(tmp_path / "run", replace(cfg, augment=""))
    assert (tmp_path / "run" / STATE).exists()
    with pytest.raises(UserError, match="different configuration"):
        Trainer(replace(cfg, augment=""), tmp_path / "run", resume=True)
    older = tmp_path / "older"
    older.mkdir()
    stored = json.loads((tmp_path / "run" / CONFIG).read_text())
    del stored["augment"]  # a config.json written before the option existed
    (older / CONFIG).write_text(json.dumps(stored))
    assert trained_with(older, replace(cfg, augment="")) and not trained_with(older, cfg)


def test_gaussian_noise_composes_with_adversarial_training(tmp_path):
    pgd = TINY | {"epochs": 1, "method": "pgd", "method_options": {"steps": "1"}}
    noisy = Trainer(TrainConfig(**(pgd | {"augment": NOISE})), tmp_path / "noisy").run()
    plain = Trainer(TrainConfig(**pgd), tmp_path / "plain").run()
    assert noisy["history"][0]["train_loss"] != plain["history"][0]["train_loss"]


def test_a_noise_mixture_noises_a_fraction_p_of_the_images_each_with_one_of_the_sigmas():
    sigmas = (0.01, 0.04)  # small enough that clamping at 0 and 1 never bites around 0.5
    x = torch.full((400, 1, 16, 16), 0.5)
    torch.manual_seed(0)
    noisy = parse_augment(f"gaussian:{sigmas[0]},{sigmas[1]}:p=0.5")(x)
    spread = (noisy - x).flatten(1).std(1)
    untouched = spread == 0
    assert 0 < untouched.sum() < len(x)
    nearest = (spread[~untouched, None] / torch.tensor(sigmas)).log().abs().min(1).values
    assert (nearest < 0.25).all()  # every noised image has (about) one of the sigmas
    assert {(spread / s - 1).abs().lt(0.25).any().item() for s in sigmas} == {True}
    assert (parse_augment(f"gaussian:{sigmas[0]}")(x) != x).flatten(1).any(1).all()  # p defaults to 1


@pytest.mark.parametrize("spec", ["gauss:0.3", "gaussian", "gaussian:", "gaussian:abc", "gaussian:-1", "gaussian:1/0",
                                  "gaussian:0.1,x", "gaussian:0.1:p=2", "gaussian:0.1:q=0.5", "gaussian:0.1:p=0.5:x"])
def test_a_bad_augment_spec_is_one_line_naming_the_option_and_exit_2(tmp_path, spec):
    proc = odebench("train", "--model", "resnet_small", "--augment", spec, "--out", tmp_path / "o")
    assert "--augment" in one_line_error(proc)
    assert not (tmp_path / "o").exists()


def test_the_strong_preset_trains_both_twins_with_and_without_noise_on_all_of_mnist_with_one_recipe():
    exp = build("E2", STRONG, {"mnist": "mnist", "cifar10": "cifar10"})  # MNIST only
    assert {part.dataset for part in exp.parts} == {"mnist"}
    models = exp.parts[0].models
    assert all(part.models == models for part in exp.parts)
    names = {(m.train.model, m.train.augment) for m in models}
    twin, ode = STRONG.resnet["mnist"][0], STRONG.odenet["mnist"][0]
    augments = set(STRONG.augments.values())
    assert names == {(model, aug) for model in (twin, ode) for aug in augments} and "" in augments and len(augments) > 1
    assert ODE_PRESETS[twin] == replace(ODE_PRESETS[ode], step_size=0.0, twin=True,
                                        description=ODE_PRESETS[twin].description)
    assert len({m.key for m in models}) == len(models)
    for spec in models:
        assert spec.train.subset is None and spec.train.test_subset is None and spec.train.method == "standard"
        partner = next(m for m in models if m.train.augment == spec.train.augment and m is not spec)
        assert replace(spec.train, model=partner.train.model) == partner.train  # only the block differs
    (pgd,) = exp.parts  # AutoAttack runs as the last rung of the budget curves, not twice
    assert [a.name for a in pgd.attacks] == ["fgsm", "pgd"] and pgd.attacks[1].options == {}  # PGD-40, step 0.01
    assert pgd.eps[1:] == list(STRONG.table1_eps["mnist"]) and pgd.n_samples == STRONG.n_samples
    assert any("budget curves" in change for change in exp.changes)
    assert not any("AutoAttack row (not in the paper)" in change for change in exp.changes)
    assert all(any(aug in change for change in exp.changes) for aug in augments - {""})
    for spec in models:  # one recipe: a one-cycle schedule, bf16 training steps (fixed-step solvers only)
        assert (spec.train.schedule, spec.train.precision, spec.train.epochs) == ("onecycle", "auto", STRONG_EPOCHS)
    with pytest.raises(UserError, match="strong preset"):
        build("E5", STRONG, {"mnist": "mnist", "cifar10": "cifar10"})


def test_a_tiny_strong_preset_trains_the_four_models_and_attacks_them_end_to_end(shared_data, tmp_path, monkeypatch):
    tiny = replace(STRONG, name="strong-tiny", train_subset={"mnist": 300}, test_subset=100, n_samples=20,
                   autoattack_samples=10, autoattack_options=FAST.autoattack_options, autoattack_eps={"mnist": (0.2,)},
                   resnet={"mnist": (STRONG.resnet["mnist"][0], {"channels": 4}, 1, 64)},
                   odenet={"mnist": (STRONG.odenet["mnist"][0], {"channels": 4}, 1, 64)})
    monkeypatch.setitem(PRESETS, tiny.name, tiny)
    reproduce(["E2"], tiny.name, tmp_path, str(shared_data), "cpu", 0, None, None, SILENT)
    df = pd.read_csv(tmp_path / tiny.name / "E2" / "mnist" / "results.csv")
    models = build("E2", tiny, {"mnist": "mnist"}).parts[0].models
    assert set(df["model"]) == {m.key for m in models} and set(df["attack"]) == {"fgsm", "pgd", "autoattack", "worst case"}
    assert df["robust_acc"].between(0, 1).all()
    for spec in models:
        meta = json.loads((tmp_path / tiny.name / "models" / "mnist" / spec.key / "meta.json").read_text())
        assert (meta["model"], meta["training"]["augment"]) == (spec.train.model, spec.train.augment)


def test_a_twin_gets_no_published_neural_ode_numbers_beside_it():
    from robustbench_ode.report.published import lookup

    assert lookup("E2", "mnist", "pgd", "odenet_yan", "standard", 0.2) is not None
    assert lookup("E2", "mnist", "pgd", "odenet_yan_twin", "standard", 0.2) is None
