"""Training to a published recipe: explicit multistep milestones and factor, checkpoints kept at
chosen epochs (snapshots), and the `published` preset that uses both."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustbench_ode.checkpoint import load_checkpoint, read_meta
from robustbench_ode.errors import UserError
from robustbench_ode.experiments.paper_specs import table1_models
from robustbench_ode.experiments.presets import PRESETS
from robustbench_ode.training.config import TrainConfig
from robustbench_ode.training.trainer import Trainer, make_optimizer, snapshot_dir

from .helpers import TINY, odebench


def test_multistep_multiplies_the_lr_by_gamma_after_each_milestone() -> None:
    cfg = TrainConfig(**(TINY | {"optimizer": "adam", "lr": 1e-3, "schedule": "multistep", "milestones": [2, 4],
                                 "gamma": 0.2, "epochs": 6}))
    opt, sched, resolved = make_optimizer(cfg, torch.nn.Linear(2, 2))
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3, 1e-3, 2e-4, 2e-4, 4e-5, 4e-5])
    assert resolved["milestones"] == [2, 4] and resolved["gamma"] == 0.2


def test_snapshots_are_checkpoints_of_the_weights_after_that_epoch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = TrainConfig(**(TINY | {"epochs": 3, "snapshots": [1, 2]}))

    def keep(record: dict) -> None:  # the weights as they are at the end of each epoch
        states[record["epoch"]] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    states: dict[int, dict[str, torch.Tensor]] = {}
    trainer = Trainer(cfg, out)
    final = trainer.run(on_epoch=keep)
    for epoch in (1, 2):
        folder = out / snapshot_dir(epoch)
        meta = read_meta(folder)
        assert meta["epochs"] == epoch and meta["snapshot"]["of_epochs"] == 3 and len(meta["history"]) == epoch
        saved = load_file(str(folder / "model.safetensors"))
        assert all(torch.equal(saved[k], v) for k, v in states[epoch].items())
        model, _ = load_checkpoint(folder)  # loads as any checkpoint does
        assert 0 <= meta["metrics"]["test_acc"] <= 1
    assert not (out / snapshot_dir(3)).exists() and final["epochs"] == 3 and "snapshot" not in final


def test_snapshots_may_be_added_when_resuming(tmp_path: Path) -> None:
    out = tmp_path / "run"

    def stop(record: dict) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(**(TINY | {"epochs": 3})), out).run(on_epoch=stop)
    Trainer(TrainConfig(**(TINY | {"epochs": 3, "snapshots": [2]})), out, resume=True).run()
    assert read_meta(out / snapshot_dir(2))["epochs"] == 2


@pytest.mark.parametrize("change, message", [
    ({"snapshots": [4]}, "--snapshots"), ({"gamma": 0.0}, "--gamma"), ({"milestones": [0]}, "--milestones"),
])
def test_bad_schedule_settings_are_refused_naming_the_option(change: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        TrainConfig(**(TINY | {"epochs": 3} | change)).validate()
    assert message in err.value.render(lambda name: "--" + name.replace("_", "-"))


def test_malformed_epoch_lists_on_the_command_line_are_one_line() -> None:
    result = odebench("train", "--model", "resnet_small", "--milestones", "thirty")
    assert result.returncode == 2 and "--milestones" in result.stderr and "Traceback" not in result.stderr


def test_the_published_preset_trains_yan_et_al_s_pair_with_their_recipe() -> None:
    specs = {s.key: s for s in table1_models(PRESETS["published"], "mnist", "mnist")}
    assert set(specs) == {"yan_cnn-noise", "yan_ode-noise"}
    for key, model in (("yan_cnn-noise", "yan2020_cnn"), ("yan_ode-noise", "yan2020_ode")):
        train = specs[key].train
        assert (train.model, train.epochs, train.batch_size, train.optimizer, train.lr, train.weight_decay) == \
            (model, 100, 128, "adam", 1e-3, 5e-4)
        assert (train.schedule, train.milestones, train.gamma, train.subset) == ("multistep", [30, 60, 90], 0.2, None)
        assert train.augment == "gaussian:50/255,75/255,100/255:p=0.5"
        assert train.snapshots == [4, 8, 16, 32, 64]
