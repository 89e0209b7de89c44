"""Several processes under torchrun: sharded attacks write what one process writes, per-sample
seeding makes the batch irrelevant, and DDP training writes (and resumes) a checkpoint."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from robustbench_ode import distributed
from robustbench_ode.attacks.sampling import SampleRNG
from robustbench_ode.checkpoint import load_checkpoint
from robustbench_ode.evaluation.request import AttackJob, AttackSpec
from robustbench_ode.evaluation.session import run_job
from robustbench_ode.registry import ATTACKS
from robustbench_ode.training.config import TrainConfig
from robustbench_ode.training.trainer import Trainer

from .helpers import TINY, cut_and_resume, odebench, train_tiny

pytestmark = pytest.mark.slow

# every kind of randomness: restarts, per-target starts, windows, probes, transforms, Foolbox's walk
ATTACK_ARGS = ["-a", "pgd", "-a", "apgd", "-a", "square", "-a", "spsa", "-a", "difgsm", "-a", "boundary",
               "--attack-arg", "pgd.steps=5", "--attack-arg", "pgd.restarts=2", "--attack-arg", "apgd.steps=5",
               "--attack-arg", "apgd.targets=2", "--attack-arg", "square.queries=30", "--attack-arg", "spsa.steps=3",
               "--attack-arg", "spsa.samples=8", "--attack-arg", "difgsm.steps=5", "--attack-arg", "boundary.steps=20",
               "--n-samples", "40", "--batch-size", "16"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 -m robustbench_ode ARGS` (gloo on the CPU, a free port)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "robustbench_ode", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"},
                          timeout=600)


def results(out: Path) -> pd.DataFrame:
    """results.csv without the wall time, in a fixed row order."""
    frame = pd.read_csv(out / "results.csv").drop(columns="wall_s")
    return frame.sort_values(["attack", "eps"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("dist") / "tiny"
    train_tiny(path)
    return path


def test_two_processes_write_the_results_of_one_and_resume_like_it(tiny, tmp_path):
    alone = odebench("attack", "-c", tiny, *ATTACK_ARGS, "--eps", "0.1,0.2,0.3", "--out", tmp_path / "one")
    assert alone.returncode == 0, alone.stderr
    first = torchrun("attack", "-c", tiny, *ATTACK_ARGS, "--eps", "0.1,0.2", "--out", tmp_path / "two")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("Robust accuracy") == alone.stdout.count("Robust accuracy") == 2  # rank 1 prints nothing
    finished = pd.read_csv(tmp_path / "two" / "results.csv")
    resumed = torchrun("attack", "-c", tiny, *ATTACK_ARGS, "--eps", "0.1,0.2,0.3", "--out", tmp_path / "two")
    assert resumed.returncode == 0, resumed.stderr

    pd.testing.assert_frame_equal(results(tmp_path / "two"), results(tmp_path / "one"))
    again = pd.read_csv(tmp_path / "two" / "results.csv")
    assert list(again["wall_s"][: len(finished)]) == list(finished["wall_s"])  # finished cells were skipped
    records = [json.loads(line) for line in (tmp_path / "two" / "provenance.jsonl").read_text().splitlines()]
    assert [r["processes"] for r in records] == [2, 2]  # one record per invocation, by rank 0
    assert (tmp_path / "two" / "results.md").read_text() == (tmp_path / "one" / "results.md").read_text()


def test_the_batch_size_does_not_change_a_single_process_result(tiny, tmp_path):
    specs = [AttackSpec.parse(name, options) for name, options in [
        ("fgsm", {}), ("pgd", {"steps": "5", "restarts": "2"}), ("pgd", {"steps": "5", "norm": "l2"}),
        ("cw", {"steps": "5"}), ("apgd", {"steps": "5", "targets": "2"}), ("square", {"queries": "30"}),
        ("spsa", {"steps": "3", "samples": "12"}), ("difgsm", {"steps": "5", "momentum": "1"}),
        ("fab", {"steps": "5", "targets": "2"}),
        ("autoattack", {"apgd_steps": "5", "targets": "2", "fab_steps": "5", "square_queries": "30"})]]
    for batch in (7, 64):
        job = AttackJob(checkpoints=[tiny], attacks=specs, eps=[0.1, 0.2], out=tmp_path / str(batch), n_samples=50,
                        batch_size=batch, device="cpu")
        run_job(job)
    pd.testing.assert_frame_equal(without_seconds(results(tmp_path / "7")), without_seconds(results(tmp_path / "64")))


def without_seconds(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with the ensemble members' wall seconds taken out of `attack_stats` (what they broke stays)."""
    def counts(text: object) -> str:
        stats = json.loads(text) if isinstance(text, str) and text else {}
        return json.dumps({k: v for k, v in stats.items() if not k.startswith("seconds_")}, sort_keys=True)
    return df.assign(attack_stats=df["attack_stats"].map(counts))


def test_a_samples_random_numbers_depend_only_on_the_seed_and_its_id():
    ids = torch.tensor([3, 17, 40])
    together = SampleRNG(5, ids).uniform((4, 4), 2)
    alone = torch.cat([SampleRNG(5, ids[i : i + 1]).uniform((4, 4), 2) for i in range(3)])
    assert torch.equal(together, alone)
    assert torch.equal(SampleRNG(5, ids)[torch.tensor([2, 0])].uniform((4, 4), 2), together[[2, 0]])
    assert not torch.equal(SampleRNG(6, ids).uniform((4, 4), 2), together)  # the seed matters
    assert not torch.equal(SampleRNG(5, ids).uniform((4, 4), 3), together)  # and so does the draw


def test_only_attacks_whose_points_ignore_the_batch_may_be_sharded():
    whole_batch = {"boundary"}  # Foolbox draws for the whole batch
    for entry in ATTACKS:
        assert entry.builder().batch_independent == (entry.name not in whole_batch), entry.name
    assert not ATTACKS.get("fab").builder(restarts=2, targets=0).batch_independent  # torchattacks' random restarts
    assert ATTACKS.get("fab").builder(restarts=2, targets=9).batch_independent  # FAB-T draws its starts per sample


def test_ddp_training_of_one_epoch_writes_a_loadable_checkpoint(tmp_path):
    done = torchrun("train", "--model", "resnet_small", "--model-arg", "width=4", "--epochs", "1",
                    "--batch-size", "64", "--lr", "0.05", "--device", "cpu", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("checkpoint written to") == 1  # rank 0 alone reports
    assert done.stdout.count("measuring clean test accuracy") == 1
    model, meta = load_checkpoint(tmp_path / "run", torch.device("cpu"))
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert meta["completed"] and len(meta["history"]) == 1
    assert meta["history"][0]["train_acc"] > 0.2  # counted over both processes' shares
    assert torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)["epoch"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_twice(rank: int, port: int, root: Path) -> None:
    """In each of 2 spawned processes: a whole 2-epoch DDP run, and one stopped after epoch 1 and resumed."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = TINY | {"method": "pgd", "method_options": {"steps": "2", "eps": "0.1", "step_size": "0.05"}}
    Trainer(TrainConfig(**cfg), root / "whole").run()
    cut_and_resume(cfg, root / "cut")
    torch.distributed.barrier()
    distributed.leave()
    assert distributed._cpu_group is None and not torch.distributed.is_initialized()


def test_leaving_destroys_the_group_and_forgets_the_package_reference(tmp_path):
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert distributed.cpu_group() is torch.distributed.group.WORLD
        distributed.leave()
        assert not torch.distributed.is_initialized()
        assert distributed._cpu_group is None  # no reference keeps gloo's threads alive into interpreter shutdown
        distributed.leave()  # a second call (the atexit one after an explicit one) does nothing
    finally:  # the rest of this test process must not find a group
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def test_resumed_ddp_training_ends_with_the_uninterrupted_weights(tmp_path):
    torch.multiprocessing.spawn(_train_twice, args=(_free_port(), tmp_path), nprocs=2)
    whole, cut = (load_file(tmp_path / run / "model.safetensors") for run in ("whole", "cut"))
    assert whole.keys() == cut.keys()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)


def test_yopo_refuses_several_processes(tmp_path):
    done = torchrun("train", "--model", "resnet_small", "--model-arg", "width=4", "--epochs", "1", "--method", "yopo",
                    "--device", "cpu", "--out", tmp_path / "run")
    assert done.returncode != 0
    assert "does not run in several processes" in done.stderr
