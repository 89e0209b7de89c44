"""`odebench reproduce --preset fast`: every paper experiment runs end to end on real data slices."""
import pandas as pd
import pytest

from robustbench_ode.errors import UserError
from robustbench_ode.experiments.paper_specs import E1_HS, build
from robustbench_ode.experiments.presets import CPU, FAST, PAPER, PRESETS
from robustbench_ode.experiments.reproduce import reproduce, resolve_datasets
from robustbench_ode.progress import SILENT


@pytest.fixture(scope="module")
def fast_all(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    reproduce(["all"], "fast", out, str(shared_data), "cpu", 0, None, None, SILENT, precision="fp32")
    return out / "fast"


@pytest.mark.slow  # the whole fast preset: every experiment trained and attacked (~2 min)
@pytest.mark.parametrize("name", ["E1", "E2", "E3", "E4", "E5"])
def test_each_experiment_runs_end_to_end_with_the_fast_preset(fast_all, name):
    summary = (fast_all / name / "README.md").read_text()
    assert "Preset: **fast**" in summary and "numbers are not meaningful" in summary
    csvs = list((fast_all / name).glob("*/results.csv"))
    assert csvs
    df = pd.concat(pd.read_csv(c) for c in csvs)
    assert df["robust_acc"].between(0, 1).all()
    # every cell of a model saw the same test images: one clean accuracy per model and sample count
    assert df.groupby(["checkpoint_sha", "n"])["clean_acc"].nunique().eq(1).all()


@pytest.mark.slow  # the whole fast preset: every experiment trained and attacked (~2 min)
def test_e1_trains_the_whole_h_sweep_and_transfers_fgsm_from_the_three_block_net(fast_all):
    df = pd.read_csv(fast_all / "E1" / "cifar10-jpeg" / "results.csv")
    assert df["model"].nunique() == len(E1_HS) == 11
    assert set(df["source"]) == {"e1-source"} and set(df["attack"]) == {"fgsm"}
    assert sorted(df["eps"].unique()) == pytest.approx([0, 0.1, 0.3, 0.5])


@pytest.mark.slow  # the whole fast preset: every experiment trained and attacked (~2 min)
def test_e2_tables_carry_the_published_numbers_beside_ours(fast_all):
    text = (fast_all / "E2" / "mnist" / "results.md").read_text()
    assert "paper 25.20" in text and "paper 93.62" in text  # FGSM ResNet50 / PGD Neural ODE at eps 0.2
    text = (fast_all / "E2" / "cifar10-jpeg" / "results.md").read_text()
    assert "CIFAR-10 (JPEG q75 copy)" in text and "paper 59.15" in text


@pytest.mark.slow  # the whole fast preset: every experiment trained and attacked (~2 min)
def test_e4_runs_l2_pgd_beside_the_boundary_attack_on_the_same_images(fast_all):
    for part in ("mnist", "cifar10-jpeg"):
        df = pd.read_csv(fast_all / "E4" / part / "results.csv")
        assert set(df["attack"]) == {"boundary", "pgd", "worst case"}  # both L2: their worst case too
        assert set(df["norm"]) == {"l2"}
        by_attack = df.groupby(["checkpoint_sha", "attack"])[["n", "clean_acc"]].first().unstack("attack")
        assert (by_attack["n"]["boundary"] == by_attack["n"]["pgd"]).all()
        assert (by_attack["clean_acc"]["boundary"] == by_attack["clean_acc"]["pgd"]).all()


@pytest.mark.slow  # the whole fast preset: every experiment trained and attacked (~2 min)
def test_e5_compares_three_adversarial_trainings_with_the_neural_ode(fast_all):
    df = pd.read_csv(fast_all / "E5" / "cifar10-jpeg" / "results.csv")
    assert set(df["training"]) == {"pgd", "trades", "yopo", "standard"}
    assert "paper 41.61" in (fast_all / "E5" / "cifar10-jpeg" / "results.md").read_text()


@pytest.mark.slow  # the whole fast preset: every experiment trained and attacked (~2 min)
def test_a_rerun_reuses_checkpoints_and_cells(fast_all, shared_data):
    before = {p: p.stat().st_mtime_ns for p in fast_all.glob("models/*/*/model.safetensors")}
    csv = fast_all / "E2" / "mnist" / "results.csv"
    rows = len(pd.read_csv(csv))
    reproduce(["E2"], "fast", fast_all.parent, str(shared_data), "cpu", 0, "mnist", None, SILENT, precision="fp32")
    assert {p: p.stat().st_mtime_ns for p in fast_all.glob("models/*/*/model.safetensors")} == before
    assert len(pd.read_csv(csv)) == rows


@pytest.mark.slow  # the whole fast preset: every experiment trained and attacked (~2 min)
def test_precision_reaches_every_training_and_attack(fast_all):
    import json

    metas = [json.loads(p.read_text()) for p in (fast_all / "models").glob("*/*/meta.json")]
    assert metas and {m["training"]["precision"] for m in metas} == {"fp32"}
    assert {m["training"]["precision_requested"] for m in metas} == {"fp32"}
    frames = [pd.read_csv(p) for p in fast_all.glob("E*/*/results.csv")]
    assert frames and set(pd.concat(frames)["precision"]) == {"fp32"}


def test_the_cpu_presets_fast_recipes_train_on_every_training_image_and_say_so():
    exp = build("E2", CPU, {"mnist": "mnist", "cifar10": "cifar10-jpeg"})
    for part in exp.parts:
        resnet, ode = part.models
        assert resnet.train.subset is None and resnet.train.schedule == "onecycle"
        assert resnet.train.method_options == {}  # no label smoothing: it weakens cross-entropy attacks
        assert resnet.train.augment == ("crop:4+flip" if "cifar" in part.dataset else "")
        assert ode.train.augment == ""
        if part.dataset == "mnist":  # the MNIST ODE too; the CIFAR one keeps its subset and recipe
            assert (ode.train.subset, ode.train.schedule, ode.train.model_options["zero_init"]) == (None, "onecycle", True)
        else:
            assert (ode.train.subset, ode.train.schedule) == (CPU.train_subset["cifar10"], "auto")
    assert sum("on all training images" in change for change in exp.changes) == 3
    e5_preact = build("E5", CPU, {"cifar10": "cifar10-jpeg"}).parts[0].models[0]
    assert e5_preact.train.subset == CPU.train_subset["cifar10"] and e5_preact.train.schedule == "auto"


def test_every_non_paper_preset_says_what_it_changed():
    assert PAPER.changes("E2") == []
    for preset in (CPU, FAST):
        for name in ("E1", "E2", "E3", "E4", "E5"):
            assert len(build(name, preset, {"mnist": "mnist", "cifar10": "cifar10"}).changes) >= 2


def test_the_paper_preset_uses_the_papers_settings():
    exp = build("E2", PRESETS["paper"], {"mnist": "mnist"})
    resnet, ode = exp.parts[0].models
    assert (resnet.train.model, ode.train.model) == ("resnet50", "odenet_mnist")
    assert (ode.train.epochs, ode.train.batch_size, ode.train.lr) == (100, 32, 1e-3)
    assert exp.parts[0].eps == [0.0, 0.2, 0.3, 0.4, 0.5] and exp.parts[0].n_samples == 10000
    pgd = exp.parts[0].attacks[1]
    assert pgd.name == "pgd" and pgd.options == {}  # defaults: step 0.01, 40 steps, random start


def test_cifar_resolves_to_the_jpeg_copy_when_the_official_files_are_absent(tmp_path):
    (tmp_path / "CIFAR10-JPEG").mkdir()
    assert resolve_datasets(str(tmp_path), None, None)["cifar10"] == "cifar10-jpeg"
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert resolve_datasets(str(tmp_path), None, None)["cifar10"] == "cifar10"


def test_unknown_experiment_or_preset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown experiment"):
        reproduce(["E7"], "fast", tmp_path, None, "cpu", 0, None, None, SILENT)
    with pytest.raises(UserError, match="preset must be one of"):
        reproduce(["E2"], "slow", tmp_path, None, "cpu", 0, None, None, SILENT)


def test_a_finished_checkpoint_trained_with_other_settings_is_never_reused(tmp_path):
    from robustbench_ode.experiments.reproduce import ensure_trained
    from robustbench_ode.experiments.spec import ModelSpec
    from robustbench_ode.training.config import TrainConfig

    spec = ModelSpec("tiny", TrainConfig(model="resnet_small", dataset="digits", model_options={"width": 4},
                                         epochs=1, batch_size=128))
    run_dir = ensure_trained(spec, tmp_path, None, "cpu", 0, SILENT)
    assert ensure_trained(spec, tmp_path, None, "cpu", 0, SILENT) == run_dir  # same settings: reused
    longer = ModelSpec("tiny", TrainConfig(model="resnet_small", dataset="digits", model_options={"width": 4},
                                           epochs=2, batch_size=128))
    with pytest.raises(UserError, match="trained with other settings"):
        ensure_trained(longer, tmp_path, None, "cpu", 0, SILENT)


def test_a_zoo_checkpoint_trained_with_the_same_settings_is_used_instead_of_training(tmp_path):
    import json

    from robustbench_ode.experiments.reproduce import ensure_trained
    from robustbench_ode.experiments.spec import ModelSpec
    from robustbench_ode.progress import SilentReporter
    from robustbench_ode.training.config import TrainConfig

    class Lines(SilentReporter):
        def __init__(self):
            self.lines = []

        def line(self, text):
            self.lines.append(text)

    spec = ModelSpec("tiny", TrainConfig(model="resnet_small", dataset="digits", model_options={"width": 4},
                                         epochs=1, batch_size=128))
    zoo_run = ensure_trained(spec, tmp_path / "zoo", None, "cpu", 0, SILENT)
    (zoo_run / "train_state.pt").unlink()  # the zoo keeps weights, meta and config only
    lines = Lines()
    run_dir = ensure_trained(spec, tmp_path / "models", None, "cpu", 0, lines, zoo=tmp_path / "zoo")
    assert any("zoo checkpoint" in line for line in lines.lines) and not (run_dir / "train_state.pt").exists()
    assert json.loads((run_dir / "meta.json").read_text()) == json.loads((zoo_run / "meta.json").read_text())
    longer = ModelSpec("tiny", TrainConfig(model="resnet_small", dataset="digits", model_options={"width": 4},
                                           epochs=2, batch_size=128))
    other = ensure_trained(longer, tmp_path / "other", None, "cpu", 0, SILENT, zoo=tmp_path / "zoo")
    assert json.loads((other / "meta.json").read_text())["epochs"] == 2  # trained, not taken from the zoo


def test_an_unfinished_zoo_run_is_resumed_not_restarted(tmp_path):
    import json

    from robustbench_ode.experiments.reproduce import ensure_trained
    from robustbench_ode.experiments.spec import ModelSpec
    from robustbench_ode.training.config import TrainConfig
    from robustbench_ode.training.trainer import Trainer

    from .helpers import stop_after_first_epoch

    cfg = TrainConfig(model="resnet_small", dataset="digits", model_options={"width": 4}, epochs=2, batch_size=128,
                      snapshots=[1], device="cpu")
    zoo_run = tmp_path / "zoo" / "digits" / "tiny"
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, zoo_run).run(on_epoch=stop_after_first_epoch)
    run_dir = ensure_trained(ModelSpec("tiny", cfg), tmp_path / "models", None, "cpu", 0, SILENT, zoo=tmp_path / "zoo")
    meta = json.loads((run_dir / "meta.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == [1, 2]  # epoch 1 came from the zoo, only epoch 2 ran here
    assert meta["history"][0] == json.loads((zoo_run / "epoch-001" / "meta.json").read_text())["history"][0]
    assert (run_dir / "epoch-001" / "model.safetensors").is_file()
