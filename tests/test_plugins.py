"""Plugins: a third-party distribution registers models, attacks, datasets and training methods
through entry points, and every command uses them like built-ins; a broken one is one warning line.

Each plugin here is installed the way pip leaves it: a module plus a `*.dist-info` folder with
`METADATA` and `entry_points.txt`, in a temporary directory on `sys.path`.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from robustbench_ode import registry
from robustbench_ode.registry import ATTACKS, MODELS, PluginWarning

from .helpers import odebench

GROUPS = ("odebench.models", "odebench.attacks", "odebench.datasets", "odebench.methods")

TINY = '''
import torch
from torch import nn

from robustbench_ode.attacks.base import Attack
from robustbench_ode.data.base import DatasetInfo, Splits
from robustbench_ode.models.base import ImageClassifier
from robustbench_ode.registry import ATTACKS, DATASETS, METHODS, MODELS
from robustbench_ode.training.methods import Standard

INFO = DatasetInfo("stripes", "stripes 4x4", 1, 4, 2, (0.5,), (0.5,))


@MODELS.register("tiny_mlp", "one hidden layer")
def tiny_mlp(info: DatasetInfo, width: int = 8) -> ImageClassifier:
    body = nn.Sequential(nn.Flatten(), nn.Linear(info.in_channels * info.image_size ** 2, width), nn.ReLU(),
                         nn.Linear(width, info.num_classes))
    return ImageClassifier(info, body)


@ATTACKS.register("corner", "a random corner of the L-inf ball")
class Corner(Attack):
    name = "corner"
    uses_gradients = False

    def run(self, model, x, y, eps):
        return (x + eps * torch.randn_like(x).sign()).clamp(0, 1)


@DATASETS.register("stripes", "horizontal vs vertical stripes, 4x4")
def stripes(root=None, download: bool = False) -> Splits:
    y = torch.arange(200) % 2
    x = torch.rand(200, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.2
    x[y == 0, :, ::2, :] += 0.8
    x[y == 1, :, :, ::2] += 0.8
    return Splits(INFO, x[:160], y[:160], x[160:], y[160:])


@METHODS.register("plain", "cross-entropy, as a plugin")
class Plain(Standard):
    name = "plain"
'''


@pytest.fixture
def install(tmp_path, monkeypatch):
    """`install(dist, source, groups)` puts a plugin distribution on sys.path; the project registries
    forget their plugins for the test and get their entries back afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    for reg in registry._PLUGGABLE:
        reg._load()
        monkeypatch.setattr(reg, "_entries", {name: e for name, e in reg._entries.items() if not e.plugin})
        monkeypatch.setattr(reg, "_loaded", False)
    monkeypatch.setattr(registry, "_plugins", None)
    monkeypatch.syspath_prepend(str(site))
    modules = []

    def install(dist: str, source: str, groups: tuple[str, ...] = GROUPS) -> Path:
        module = dist.replace("-", "_")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("".join(f"[{g}]\n{module} = {module}\n\n" for g in groups))
        modules.append(module)
        importlib.invalidate_caches()
        monkeypatch.setattr(registry, "_catalogue", None)  # an installed plugin makes the catalogue unusable
        return site

    yield install
    for module in modules:
        sys.modules.pop(module, None)


def test_a_plugins_model_attack_dataset_and_method_appear_in_list_marked_with_its_distribution(install, monkeypatch):
    install("tiny-plugin", TINY)
    monkeypatch.setenv("COLUMNS", "200")
    proc = odebench("list")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "tiny-plugin" in line]
    assert [next(n for n in ("tiny_mlp", "corner", "stripes", "plain") if n in row) for row in rows] == \
        ["tiny_mlp", "corner", "stripes", "plain"]
    assert "resnet56" in proc.stdout and "width=8" in proc.stdout


def test_a_plugin_model_trains_on_a_plugin_dataset_with_a_plugin_method_and_is_attacked_by_a_plugin_attack(install, tmp_path):
    install("tiny-plugin", TINY)
    run = tmp_path / "run"
    proc = odebench("train", "--model", "tiny_mlp", "--model-arg", "width=4", "--dataset", "stripes",
                    "--method", "plain", "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--out", run)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model"] == "tiny_mlp" and meta["versions"]["plugin tiny-plugin"] == "0.1"
    proc = odebench("attack", "-c", run, "-a", "corner", "-a", "fgsm", "--eps", "0,0.5", "--n-samples", "20",
                    "--device", "cpu", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(tmp_path / "o" / "results.csv")
    assert set(rows["attack"]) == {"corner", "fgsm", "worst case"}  # and their per-sample worst case
    assert set(rows["architecture"]) == {"tiny_mlp"} and set(rows["training"]) == {"plain"}
    assert "| corner | run (tiny_mlp) | plain |" in (tmp_path / "o" / "results.md").read_text()


def test_a_plugin_model_is_audited(install, tmp_path):
    install("tiny-plugin", TINY)
    run = tmp_path / "run"
    assert odebench("train", "--model", "tiny_mlp", "--dataset", "stripes", "--epochs", "1", "--device", "cpu",
                    "--out", run).returncode == 0
    proc = odebench("audit", run, "--n-samples", "20", "--apgd-steps", "5", "--square-queries", "20", "--spsa-steps", "2",
                    "--spsa-samples", "2", "--device", "cpu", "--out", tmp_path / "audit")
    assert proc.returncode == 0, proc.stderr
    assert "- model: tiny_mlp" in (tmp_path / "audit" / "audit.md").read_text()


BROKEN = {
    "missing-import": "import odebench_no_such_module\n",
    "raises-midway": '''
        from robustbench_ode.registry import MODELS
        MODELS.register("half_done", "registered before the crash")(lambda info: None)
        raise RuntimeError("plugin bug\\n  over two lines")
        ''',
    "takes-a-builtin-name": '''
        from robustbench_ode.registry import ATTACKS
        ATTACKS.register("fgsm", "a clash")(lambda: None)
        ''',
}


def test_each_broken_plugin_is_one_warning_naming_it_and_the_others_still_load(install):
    for dist, source in BROKEN.items():
        install(dist, source)
    install("tiny-plugin", TINY)
    with pytest.warns(PluginWarning) as caught:
        proc = odebench("list", "models")
    assert proc.returncode == 0, proc.stderr
    messages = sorted(str(w.message) for w in caught if w.category is PluginWarning)
    assert [m.split()[1] for m in messages] == sorted(BROKEN)
    assert "No module named 'odebench_no_such_module'" in messages[0]
    assert "RuntimeError: plugin bug over two lines" in messages[1]
    assert "attack 'fgsm' registered twice (already built in)" in messages[2]
    assert "tiny_mlp" in MODELS and "half_done" not in MODELS
    assert ATTACKS.get("fgsm").plugin == ""


def test_the_installed_cli_shows_each_broken_plugin_as_one_stderr_line_and_exits_0(install):
    install("missing-import", BROKEN["missing-import"])
    site = install("takes-a-builtin-name", BROKEN["takes-a-builtin-name"], GROUPS[2:3])
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
                        "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "robustbench_ode", "list", "models"], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    lines = sorted(line for line in proc.stderr.splitlines() if line.strip())
    assert len(lines) == 2, proc.stderr
    assert "plugin missing-import skipped" in lines[0] and "plugin takes-a-builtin-name skipped" in lines[1]
    assert "resnet56" in proc.stdout
