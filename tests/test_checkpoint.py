"""Checkpoints: safetensors + JSON, rebuilt from the registry, bit-identical, tamper-proof."""
import json

import pytest
import torch

from robustbench_ode.checkpoint import WEIGHTS, load_checkpoint, read_meta
from robustbench_ode.data import load_dataset
from robustbench_ode.errors import UserError

from robustbench_ode.training.config import TrainConfig
from robustbench_ode.training.trainer import Trainer

from .helpers import TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "run"
    trainer = Trainer(TrainConfig(**(TINY | {"epochs": 1})), out)
    trainer.run()
    return out, trainer.model.eval()


@pytest.fixture(scope="module")
def ckpt(trained):
    return trained[0]


def test_loading_rebuilds_the_model_with_bit_identical_logits(trained):
    out, original = trained
    x = load_dataset("digits").test_x[:32]
    model, _ = load_checkpoint(out)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


def test_metadata_records_what_a_reader_needs(ckpt):
    meta = read_meta(ckpt)
    for key in ("model", "model_options", "dataset", "normalisation", "epochs", "metrics", "seed", "versions",
                "device", "wall_time_s", "weights_sha256", "command"):
        assert key in meta, key
    assert meta["model_options"] == {"width": 4, "h": 1.0}
    assert 0 <= meta["metrics"]["test_acc"] <= 1


def test_weights_are_safetensors_not_pickle(trained):
    out, model = trained
    head = (out / WEIGHTS).read_bytes()[:8]
    header_len = int.from_bytes(head, "little")
    header = json.loads((out / WEIGHTS).read_bytes()[8 : 8 + header_len])
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert sorted(tensors) == sorted(model.state_dict())  # every weight, each a typed safetensors entry
    assert all("dtype" in v and "data_offsets" in v for v in tensors.values())


def test_a_tampered_weights_file_is_refused(ckpt, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    data = bytearray((bad / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (bad / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(UserError, match="hash does not match"):
        load_checkpoint(bad)


@pytest.mark.parametrize("meta_text", ["not json", json.dumps({"format": "someone-else"}), json.dumps([1, 2])])
def test_a_foreign_checkpoint_is_refused(tmp_path, meta_text):
    (tmp_path / "meta.json").write_text(meta_text)
    with pytest.raises(UserError, match="not an odebench checkpoint"):
        load_checkpoint(tmp_path)


def test_a_pickle_file_is_never_unpickled(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("open('" + str(tmp_path / "pwned") + "', 'w').write('x')",))

    (tmp_path / "model.pt").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(UserError):
        load_checkpoint(tmp_path / "model.pt")
    assert not (tmp_path / "pwned").exists()


def test_a_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
