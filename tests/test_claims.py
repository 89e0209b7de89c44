"""The claims ledger and `odebench claims check`: every published claim parses, the protocol draws
the paper's own test images, the verdict rules, and a check run end to end on a pickled release."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_ode.checkpoint import sha256_file
from robustbench_ode.claims import load_ledger
from robustbench_ode.api import evaluate
from robustbench_ode.claims.check import (CONSISTENT, NOT_REPRODUCED, OVERSTATED, REFUTED, REPRODUCED, VIOLATED,
                                          judge, overall, released_tensors)
from robustbench_ode.claims.ledger import Sampling
from robustbench_ode.registry import ATTACKS, MODELS

from .helpers import odebench


def test_the_ledger_holds_the_three_tisode_claims_with_registered_models_and_attacks() -> None:
    claims = load_ledger()
    assert {"yan2020-cnn", "yan2020-ode", "yan2020-tisode"} <= set(claims)
    for claim in claims.values():
        assert claim.model in MODELS.names()
        assert all(n.attack in ATTACKS.names() for n in claim.numbers)
        assert len(claim.weights.sha256) == 64 and claim.weights.url.startswith("https://")


def test_claims_list_shows_every_claim_and_where_its_weights_are() -> None:
    result = odebench("claims", "list")
    assert result.returncode == 0
    for name, claim in load_ledger().items():
        assert name in result.stdout and claim.weights.sha256 in result.stdout.replace("\n", "")


def test_numpy_choice_draws_the_images_yan_et_al_s_attack_script_draws() -> None:
    labels = torch.zeros(10000, dtype=torch.long)
    np.random.seed(1216)  # their adversarial_attack(): seed, then 1,025 indices without replacement, 25 skipped
    theirs = np.random.choice(10000, 1025, False)[25:]
    ours = Sampling("numpy-choice", 1000, seed=1216, skip=25).indices(labels)
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("claimed, measured, ladder, verdict", [
    (72.3, 73.0, 70.0, REPRODUCED),       # protocol and ladder within 3 points
    (72.3, 73.0, None, REPRODUCED),       # no ladder at this radius
    (72.3, 73.0, 5.0, OVERSTATED),        # the protocol holds, a converged attack does not
    (72.3, 60.0, 5.0, REFUTED),           # the published attack itself falls short
    (72.3, 80.0, 76.0, NOT_REPRODUCED),   # measured above the claim
])
def test_a_published_number_is_judged_by_the_protocol_then_the_ladder(claimed, measured, ladder, verdict) -> None:
    assert judge(claimed, measured, ladder, "apgd-ce", "autoattack", 3.0)[0] == verdict


def test_an_attack_below_a_certificate_violates_it() -> None:
    assert judge(60.0, None, 59.5, "apgd-ce", "autoattack", 3.0, kind="certified")[0] == VIOLATED
    assert judge(60.0, None, 61.0, "", "autoattack", 3.0, kind="certified")[0] == CONSISTENT


def test_the_claims_verdict_is_its_most_severe_numbers() -> None:
    assert overall([REPRODUCED, OVERSTATED, NOT_REPRODUCED]) == OVERSTATED
    assert overall([REPRODUCED, REFUTED, OVERSTATED]) == REFUTED


def test_a_claim_file_missing_a_field_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('name = "bad"\ntitle = "t"\npaper = "p"\nmodel = "yan2020_cnn"\n')
    result = odebench("claims", "list", "--ledger", tmp_path)
    assert result.returncode == 2
    assert "missing 'weights'" in result.stderr and "Traceback" not in result.stderr


CLAIM = """
name = "tiny"
title = "a tiny released CNN"
paper = "nobody, 2026"
model = "yan2020_cnn"
tolerance = 3.0
[weights]
repository = "https://example.org/tiny"
file = "model_best.pth"
url = "https://example.org/tiny/model_best.pth"
sha256 = "{sha}"
licence = "none"
[protocol]
dataset = "digits"
[protocol.sampling]
method = "first"
n = 40
[[protocol.numbers]]
attack = "fgsm"
eps = 0.1
robust_acc = 50.0
[ladder]
eps = [0.1]
n_samples = 20
budgets = "pgd10,apgd-ce"
"""


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, digits) -> Path:
    """A CNN trained briefly on digits, saved as `torch.save(model)` pickles it (a whole module)."""
    torch.manual_seed(0)
    model = MODELS.get("yan2020_cnn").build(digits.info)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(digits.train_x[:512]), digits.train_y[:512]).backward()
        opt.step()
    path = tmp_path_factory.mktemp("release") / "model_best.pth"
    torch.save(model.body, path)
    return path


def test_claims_check_runs_protocol_and_ladder_on_a_pickled_release_without_running_it(
        released: Path, tmp_path: Path, digits) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    (ledger / "tiny.toml").write_text(CLAIM.format(sha=sha256_file(released)))
    out = tmp_path / "out"
    result = odebench("claims", "check", "tiny", "--weights", released, "--ledger", ledger, "--no-audit",
                      "--device", "cpu", "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "claim.json").read_text())
    assert report["weights"]["is_released_file"]
    (number,) = report["numbers"]
    # the protocol's FGSM number is what `odebench attack` gives on the first 40 test images
    model = MODELS.get("yan2020_cnn").build(digits.info)
    model.body.load_state_dict(released_tensors(released))
    direct = evaluate(model.eval(), (digits.test_x[:40], digits.test_y[:40]), ["fgsm"], [0.1], n_samples=None,
                      independent_eps=True, device="cpu")
    assert number["measured"] == pytest.approx(100 * direct["robust_acc"].iloc[0], abs=1e-6)
    ladder = [r["robust_acc"] for r in report["ladder"]]
    assert ladder == sorted(ladder, reverse=True) and len(ladder) == 2
    assert (number["verdict"], number["why"]) == judge(50.0, number["measured"], number["ladder"],
                                                       number["first_below"], "apgd-ce", 3.0)
    assert report["verdict"] == number["verdict"] and (out / "claim.md").is_file()


def test_claims_check_says_when_the_weights_are_not_the_released_file(released: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    (ledger / "tiny.toml").write_text(CLAIM.format(sha="0" * 64))
    result = odebench("claims", "check", "tiny", "--weights", released, "--ledger", ledger, "--no-audit",
                      "--device", "cpu", "--budgets", "pgd10", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "not the released file" in " ".join(result.stdout.split())
    assert not json.loads((tmp_path / "out" / "claim.json").read_text())["weights"]["is_released_file"]


def test_an_unknown_claim_is_one_line_listing_the_known_ones() -> None:
    result = odebench("claims", "check", "nope", "--weights", "x.pth")
    assert result.returncode == 2 and "yan2020-ode" in result.stderr


def test_claims_check_audits_the_released_model_too(released: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    (ledger / "tiny.toml").write_text(CLAIM.format(sha=sha256_file(released)))
    out = tmp_path / "out"
    result = odebench("claims", "check", "tiny", "--weights", released, "--ledger", ledger, "--n-samples", "8",
                      "--budgets", "pgd10", "--device", "cpu", "--out", out)
    assert result.returncode == 0, result.stderr
    audit = json.loads((out / "claim.json").read_text())["audit"]
    assert audit["n"] == 8 and audit["checks"] and (out / "audit" / "audit.md").is_file()
    assert audit["verdict"] in (out / "claim.md").read_text()


def test_released_tensors_reads_a_training_checkpoint_dict_whatever_its_suffix(tmp_path: Path, digits) -> None:
    body = MODELS.get("yan2020_cnn").build(digits.info).body
    path = tmp_path / "checkpoint_epoch_100.pth.tar"
    torch.save({"epoch": 100, "state_dict": body.state_dict(), "best_acc1": 0.99}, path)
    tensors = released_tensors(path)
    assert set(tensors) == set(body.state_dict())
    assert all(torch.equal(tensors[k], v) for k, v in body.state_dict().items())


def test_a_bad_sample_count_is_refused_before_anything_loads(tmp_path: Path) -> None:
    result = odebench("claims", "check", "yan2020-ode", "--weights", tmp_path / "missing.pth", "--n-samples", "0",
                      "--data-dir", tmp_path)
    assert result.returncode == 2 and "--n-samples must be >= 1" in result.stderr
