"""The CLI answers at once: listings and argument errors come from the registry's catalogue, without
torch, and the catalogue always says what the registries say."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from robustbench_ode import registry
from robustbench_ode.evaluation.request import AttackSpec
from robustbench_ode.registry import ATTACKS, MODELS


def test_the_shipped_catalogue_matches_the_registries():
    shipped = json.loads(registry.CATALOGUE.read_text())
    assert shipped == json.loads(json.dumps(registry.catalogue_data())), \
        "robustbench_ode/catalogue.json is stale: run `python -m robustbench_ode.registry` and commit it"


def test_a_catalogued_entry_builds_the_registered_builder():
    entry = registry._catalogued(ATTACKS, {"name": "pgd", "description": "", "options": [], "traits": {}})
    assert entry.builder is ATTACKS._live_entry("pgd").builder


def test_a_stale_catalogue_is_not_used(monkeypatch):
    monkeypatch.setattr(registry, "_catalogue", None)
    monkeypatch.setattr(registry, "sources_hash", lambda: "edited since")
    assert registry.catalogue() == {}
    assert "resnet20" in MODELS.names()  # from the registries themselves


@pytest.mark.parametrize("name", ATTACKS.names())
def test_an_attack_specs_norm_and_gradient_use_are_the_built_attacks(name):
    for options in ({}, {"norm": "l2"}):
        if options and "norm" not in ATTACKS.get(name).options:
            continue
        try:
            spec = AttackSpec.parse(name, options)
            attack = spec.build()
        except Exception:  # an attack that accepts no L2 says so when built; nothing to compare
            continue
        assert (spec.norm, spec.uses_gradients) == (attack.norm, attack.uses_gradients)


PROBE = """
import atexit, sys
atexit.register(lambda: print("torch loaded:", "torch" in sys.modules))
sys.argv = ["odebench", *{args!r}]
from robustbench_ode.cli import main
main()
"""


@pytest.mark.parametrize("args", [
    ["list"],
    ["list", "attacks"],
    ["attack", "-a", "nosuch", "--eps", "0.1"],
    ["attack", "-a", "pgd", "--attack-arg", "depth=3", "--eps", "0.1"],
    ["attack", "--eps", "abc"],
    ["attack", "-a", "boundary", "--eot", "3", "--eps", "0.1"],
    ["attack", "-c", "no/such/run", "--eps", "0.1"],
    ["audit", "no/such/run"],
    ["converge", "-c", "no/such/run", "--eps", "0.1"],
    ["report", "no/such/results.csv"],
    ["train", "--model", "nosuch"],
    ["train", "--model", "resnet20", "--model-arg", "depth=3"],
    ["train", "--model", "resnet20", "--augment", "blur"],
    ["train", "--model", "resnet20", "--precision", "fp16"],
    ["reproduce", "E9"],
    ["claims", "list"],
    ["claims", "check", "nosuch", "--weights", "w.pt"],
    ["attack", "--eps", "0.1", "--model-file", "no_such_file.py:build"],
    ["attack", "--eps", "0.1", "--model", "resnet20", "--weights", "no_such.safetensors"],
    ["audit", "--torchscript", "no_such.pt"],
])
def test_listings_and_argument_errors_answer_without_importing_torch(args, tmp_path):
    probe = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120)
    assert probe.returncode == (0 if "list" in args else 2), probe.stderr
    assert probe.stderr.count("\n") <= 1 and "Traceback" not in probe.stderr
    assert probe.stdout.splitlines()[-1] == "torch loaded: False"
