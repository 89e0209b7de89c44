"""Training: it learns, it resumes to the exact same result, and it protects existing runs."""
import pytest
import torch

from robustbench_ode.errors import UserError
from robustbench_ode.training.config import STATE, TrainConfig
from robustbench_ode.training.trainer import Trainer, make_optimizer

from .helpers import TINY, assert_same_weights, cut_and_resume, odebench, stop_after_first_epoch


def test_a_tiny_resnet_learns_the_digits(tmp_path):
    meta = Trainer(TrainConfig(**(TINY | {"epochs": 3})), tmp_path / "run").run()
    assert meta["history"][-1]["train_loss"] < meta["history"][0]["train_loss"]
    assert meta["metrics"]["test_acc"] > 0.8
    assert meta["metrics"]["img_per_s"] > 0


def test_an_interrupted_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    cfg = TINY | {"epochs": 3}
    straight = Trainer(TrainConfig(**cfg), tmp_path / "straight")
    straight.run()

    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(**cfg), tmp_path / "cut").run(on_epoch=stop_after_first_epoch)
    assert (tmp_path / "cut" / STATE).exists() and not (tmp_path / "cut" / "meta.json").exists()
    resumed = Trainer(TrainConfig(**cfg), tmp_path / "cut", resume=True)
    assert resumed.start_epoch == 1
    resumed.run()
    assert_same_weights(straight.model, resumed.model)


def test_an_existing_run_dir_is_not_overwritten_without_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="pass resume to continue") as err:
        Trainer(TrainConfig(**TINY), tmp_path / "run")
    assert err.value.options == ["resume", "out"]  # the CLI shows them as --resume and --out
    assert (tmp_path / "run" / "precious.txt").read_text() == "keep me"


def test_resuming_with_different_options_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(**TINY), tmp_path / "run").run(on_epoch=stop_after_first_epoch)
    with pytest.raises(UserError, match="different configuration"):
        Trainer(TrainConfig(**(TINY | {"lr": 0.01})), tmp_path / "run", resume=True)


def test_resuming_an_empty_dir_says_there_is_nothing_to_resume(tmp_path):
    with pytest.raises(UserError, match="nothing to resume"):
        Trainer(TrainConfig(**TINY), tmp_path / "none", resume=True)


def test_recipes_follow_the_paper_adam_halving_for_odes_sgd_steps_for_resnets():
    from robustbench_ode.data import load_dataset
    from robustbench_ode.models import build_model

    info = load_dataset("digits").info
    ode = build_model("odenet", info, channels=4)
    opt, sched, resolved = make_optimizer(TrainConfig(model="odenet", epochs=200), ode)
    assert resolved == {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "halve"}
    lrs = []
    for _ in range(101):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[49] == 1e-3 and lrs[50] == 5e-4 and lrs[100] == 2.5e-4

    net = build_model("resnet_small", info, width=4)
    opt, sched, resolved = make_optimizer(TrainConfig(model="resnet_small", epochs=8), net)
    assert resolved == {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4, "schedule": "multistep",
                        "milestones": [4, 6], "gamma": 0.1}
    assert opt.param_groups[0]["momentum"] == 0.9
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 0}, {"lr": -1.0}, {"optimizer": "rmsprop"},
                                 {"precision": "fp8"}, {"schedule": "cosine"}])
def test_out_of_range_settings_are_user_errors_naming_the_setting(tmp_path, bad):
    (name,) = bad
    with pytest.raises(UserError, match=f"^{name} must be") as err:
        Trainer(TrainConfig(**(TINY | bad)), tmp_path / "run")
    assert err.value.options == [name]


ODE = {"model": "odenet", "dataset": "digits", "model_options": {"channels": 4}, "epochs": 1, "batch_size": 128,
       "lr": 1e-2, "device": "cpu", "subset": 256, "test_subset": 100}


def test_a_training_solver_trains_the_odes_weights_and_leaves_its_own_solver_for_evaluation(tmp_path):
    trainer = Trainer(TrainConfig(**ODE, train_solver="rk4:step_size=0.25"), tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    meta = trainer.run()
    assert [h["nfe_forward"] for h in meta["history"]] == [16]  # 4 rk4 steps of 4 evaluations each
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert trainer.model.body.block.config.solver == "dopri5" and meta["model_options"].get("solver", "dopri5") == "dopri5"
    assert meta["training"]["train_solver"] == "rk4:step_size=0.25"


@pytest.mark.parametrize("cfg, message", [
    (TINY | {"train_solver": "rk4:step_size=0.25"}, "^train_solver applies to ODE models"),
    (ODE | {"train_solver": "leapfrog"}, "^train_solver 'leapfrog': unknown solver"),
])
def test_a_training_solver_needs_an_ode_model_and_a_known_solver(tmp_path, cfg, message):
    with pytest.raises(UserError, match=message):
        Trainer(TrainConfig(**cfg), tmp_path / "run")


def test_onecycle_warms_up_then_anneals_per_batch_and_resumes_to_the_same_weights(tmp_path):
    cfg = TINY | {"epochs": 3, "schedule": "onecycle"}
    straight = Trainer(TrainConfig(**cfg), tmp_path / "straight")
    steps = straight.scheduler.total_steps
    assert steps == 3 * -(-len(straight.splits.train_y) // cfg["batch_size"])
    meta = straight.run()
    lrs = [h["lr"] for h in meta["history"]]
    assert meta["training"]["schedule"] == "onecycle"
    assert lrs[0] > lrs[1] > lrs[2] and lrs[2] < 0.01 * cfg["lr"]  # past the peak after epoch 1, ~0 at the end
    assert straight.scheduler.last_epoch == steps  # stepped once per batch, not per epoch
    assert_same_weights(straight.model, cut_and_resume(cfg, tmp_path / "cut").model)


def test_label_smoothing_mixes_the_uniform_distribution_into_the_targets():
    import torch.nn.functional as F
    from torch import nn

    from robustbench_ode.training.methods import build_method

    torch.manual_seed(0)
    model = nn.Linear(5, 4)
    x, y = torch.randn(8, 5), torch.randint(0, 4, (8,))
    logp = F.log_softmax(model(x), 1).detach()
    expected = (0.9 * -logp.gather(1, y[:, None]).mean() + 0.1 * -logp.mean()).item()
    loss, _ = build_method("standard", {"label_smoothing": "0.1"}).train_step(
        model, torch.optim.SGD(model.parameters(), lr=0.0), x, y)
    assert loss == pytest.approx(expected, rel=1e-5)
    with pytest.raises(UserError, match="label_smoothing"):
        build_method("standard", {"label_smoothing": "1.5"})


def test_auto_precision_trains_in_fp32_where_bf16_is_not_native_and_records_it(tmp_path, monkeypatch):
    from robustbench_ode import precision as prec

    monkeypatch.setattr(prec, "cpu_flags", lambda: {"sse2", "avx2"})
    trainer = Trainer(TrainConfig(**(TINY | {"epochs": 1})), tmp_path / "run")
    meta = trainer.run()
    assert (meta["training"]["precision"], meta["training"]["precision_requested"]) == ("fp32", "auto")
    assert meta["training"]["channels_last"] is False  # the layout goes with bf16 unless asked for
    assert [h["precision"] for h in meta["history"]] == ["fp32"]


def test_auto_precision_trains_in_bf16_on_native_bf16_cpus_and_measures_test_accuracy_in_fp32(tmp_path, monkeypatch):
    from robustbench_ode import precision as prec
    from robustbench_ode.training import methods, trainer

    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    seen = []
    real_step = methods.Standard.train_step
    monkeypatch.setattr(methods.Standard, "train_step",
                        lambda self, *a: seen.append(torch.is_autocast_enabled("cpu")) or real_step(self, *a))
    real_evaluate = trainer.evaluate

    def evaluate_outside_autocast(*args):
        seen.append(("evaluate", torch.is_autocast_enabled("cpu")))
        return real_evaluate(*args)

    monkeypatch.setattr(trainer, "evaluate", evaluate_outside_autocast)
    meta = Trainer(TrainConfig(**(TINY | {"epochs": 1})), tmp_path / "run").run()
    assert meta["training"]["precision"] == "bf16" and meta["training"]["channels_last"] is True
    assert seen[:-1] and all(s is True for s in seen[:-1]) and seen[-1] == ("evaluate", False)


def test_a_run_resumes_in_another_precision_and_each_epoch_says_which(tmp_path):
    cfg = TINY | {"epochs": 2, "precision": "bf16"}
    resumed = cut_and_resume(cfg, tmp_path / "run", cfg | {"precision": "fp32"})
    assert [h["precision"] for h in resumed.history] == ["bf16", "fp32"]


def test_runs_written_with_the_old_amp_field_are_still_recognised(tmp_path):
    import json
    from dataclasses import asdict

    from robustbench_ode.training.config import CONFIG, trained_with

    cfg = TrainConfig(**TINY)
    stored = asdict(cfg)
    del stored["precision"]
    (tmp_path / CONFIG).write_text(json.dumps(stored | {"amp": "bf16", "channels_last": True}))
    assert trained_with(tmp_path, cfg)
    assert not trained_with(tmp_path, TrainConfig(**(TINY | {"lr": 0.01})))


def test_train_names_an_unknown_precision_in_one_line_and_writes_nothing(tmp_path):
    from .test_cli import one_line_error

    proc = odebench("train", "--model", "resnet_small", "--precision", "fp16", "--epochs", "1", "--out", tmp_path / "run")
    assert "--precision" in one_line_error(proc)
    assert not (tmp_path / "run").exists()


def test_train_measures_the_checkpoints_test_accuracy_on_a_test_subset_and_says_on_how_many_images(tmp_path):
    import json

    proc = odebench("train", "--model", "resnet_small", "--model-arg", "width=4", "--epochs", "1", "--subset", "100",
                    "--test-subset", "50", "--device", "cpu", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "measuring clean test accuracy on 50 test images" in " ".join(proc.stdout.split())
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["test_size"] == 50
