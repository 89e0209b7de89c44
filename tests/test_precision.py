"""--precision: auto picks bf16 only where the hardware computes it natively, and reported
decisions stay in fp32 whatever the gradients ran in."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_ode import precision as prec
from robustbench_ode.errors import UserError
from robustbench_ode.models.base import GradientsIn
from robustbench_ode.precision import Precision, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, expected", [
    ({"sse2", "avx2", "fma"}, "fp32"),
    ({"sse2", "avx2", "avx512f"}, "fp32"),
    ({"sse2", "avx2", "avx512f", "avx512_bf16"}, "bf16"),
    ({"sse2", "avx2", "amx_tile", "amx_bf16"}, "bf16"),
])
def test_auto_uses_bf16_only_on_cpus_with_native_bf16_and_says_why(monkeypatch, flags, expected):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)  # oneDNN not capped (see the next test)
    monkeypatch.setattr(prec, "cpu_flags", lambda: flags)
    monkeypatch.setattr(prec, "_probe_cached", lambda: pytest.fail("x86 flags decide without a probe"))
    chosen = resolve_precision("auto", CPU)
    assert chosen.name == expected and chosen.requested == "auto"
    assert chosen.to_dict() == {"precision": expected, "precision_requested": "auto", "precision_reason": chosen.reason}
    assert ("bf16" in chosen.reason) if expected == "bf16" else ("without" in chosen.reason)


@pytest.mark.parametrize("isa, expected", [("AVX2", "fp32"), ("avx512_core", "fp32"), ("AVX512_CORE_BF16", "bf16"),
                                           ("AVX512_CORE_AMX", "bf16"), ("ALL", "bf16")])
def test_auto_keeps_fp32_where_onednn_is_capped_below_bf16(monkeypatch, isa, expected):
    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2", "avx512_bf16", "amx_bf16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    chosen = resolve_precision("auto", CPU)
    assert chosen.name == expected and (expected == "bf16" or "ONEDNN_MAX_CPU_ISA" in chosen.reason)


@pytest.mark.parametrize("speedup, expected", [(0.1, "fp32"), (1.0, "fp32"), (2.5, "bf16")])
def test_without_readable_flags_a_timed_probe_decides(monkeypatch, speedup, expected):
    monkeypatch.setattr(prec, "cpu_flags", lambda: set())
    monkeypatch.setattr(prec, "_probe_cached", lambda: speedup)
    chosen = resolve_precision("auto", CPU)
    assert chosen.name == expected and "probe" in chosen.reason


def test_the_probe_is_cached_per_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(prec, "probe_bf16_speedup", lambda: calls.append(1) or 1.7)
    assert prec._probe_cached() == 1.7 and prec._probe_cached() == 1.7
    assert len(calls) == 1 and (tmp_path / "odebench" / "precision.json").exists()


def test_explicit_precisions_are_kept_and_unknown_ones_are_user_errors(monkeypatch):
    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2"})
    assert resolve_precision("bf16", CPU).name == "bf16" and resolve_precision("fp32", CPU).name == "fp32"
    with pytest.raises(UserError, match="precision"):
        resolve_precision("fp16", CPU)


def test_adaptive_ode_models_keep_fp32_fixed_step_ones_may_use_bf16():
    from robustbench_ode.data.base import DatasetInfo
    from robustbench_ode.models import build_model

    info = DatasetInfo("digits", "digits", 1, 8, 10, (0.5,), (0.25,))
    bf16 = Precision("bf16", "auto", "test")
    assert bf16.for_model(build_model("odenet", info, channels=4)).name == "fp32"  # dopri5
    assert bf16.for_model(build_model("odenet_yan", info, channels=4)).name == "bf16"  # Euler
    assert bf16.for_model(build_model("resnet_small", info, width=4)).name == "bf16"


def test_gradients_in_bf16_return_fp32_logits_of_the_same_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(5, 1, 4, 4)
    wrapped = GradientsIn(model)
    out = wrapped(x)
    assert out.dtype == torch.float32
    assert not torch.equal(out, model(x)) and torch.allclose(out, model(x), atol=0.05)
    assert wrapped.model is model


class DifferentInBf16(nn.Module):
    """Predicts class 0 in fp32 and class 1 under autocast: any decision made in bf16 shows."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = torch.tensor([0.0, 1.0]) if torch.is_autocast_enabled("cpu") else torch.tensor([1.0, 0.0])
        return base.to(x.device) + x.flatten(1) @ self.w.to(x.dtype)


def test_a_bf16_attack_reports_the_fp32_models_decisions():
    from robustbench_ode import evaluate

    x, y = torch.rand(12, 1, 4, 4), torch.zeros(12, dtype=torch.long)
    df = evaluate(DifferentInBf16(), (x, y), attacks=["pgd"], eps=[0.1], precision="bf16", n_samples=None)
    row = df[df["eps"] > 0].iloc[0]
    assert row["precision"] == "bf16"
    # the bf16 gradients' model claims every point at once; the fp32 decision rejects each claim,
    # the fp32 search that follows finds nothing, and the reported numbers are fp32's
    assert row["clean_acc"] == 1.0 and row["robust_acc"] == 1.0 and row["unverified"] == 12
    fp32 = evaluate(DifferentInBf16(), (x, y), attacks=["pgd"], eps=[0.1], precision="fp32", n_samples=None)
    assert fp32[fp32["eps"] > 0].iloc[0][["precision", "unverified"]].tolist() == ["fp32", 0]


def test_an_unknown_precision_is_one_line_naming_the_option_and_exit_2(tmp_path):
    from .helpers import odebench, train_tiny
    from .test_cli import one_line_error

    train_tiny(tmp_path / "run", epochs=1)
    proc = odebench("attack", "-c", tmp_path / "run", "--eps", "0.1", "--n-samples", "10", "--precision", "fp16",
                    "--out", tmp_path / "out")
    assert "--precision" in one_line_error(proc)
    assert not (tmp_path / "out" / "results.csv").exists()


def test_an_attack_records_its_precision_in_the_csv_and_provenance(tmp_path):
    import json

    import pandas as pd

    from .helpers import odebench, train_tiny

    train_tiny(tmp_path / "run", epochs=1)
    proc = odebench("attack", "-c", tmp_path / "run", "--eps", "0.1", "--n-samples", "10", "--precision", "bf16",
                    "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(df["precision"]) == {"bf16"}
    record = json.loads((tmp_path / "out" / "provenance.jsonl").read_text().splitlines()[-1])
    assert (record["precision"], record["precision_requested"]) == ("bf16", "bf16")
    assert "cpu_flags" in record["cpu"]


def test_the_audit_reports_fp32_decisions_when_its_gradient_attacks_run_in_bf16():
    from robustbench_ode.diagnostics.audited import AuditedModel, pgd

    x, y = torch.rand(12, 1, 4, 4), torch.zeros(12, dtype=torch.long)
    audited_model = AuditedModel(DifferentInBf16(), x, y, precision=Precision("bf16", "bf16", "test"))
    # bf16 gradients claim every point; the fp32 model rejects the claims and its own search finds nothing
    assert bool(audited_model.robust("PGD-10", pgd(10, 0.1, seed=0), 0.1).all())


def test_the_audit_records_the_gradient_precision_and_defaults_to_fp32(tmp_path):
    import json

    from .helpers import odebench, train_tiny

    train_tiny(tmp_path / "run", epochs=1)
    budgets = ["--n-samples", "12", "--apgd-steps", "2", "--square-queries", "5", "--spsa-steps", "1",
               "--spsa-samples", "2", "--device", "cpu"]
    for flag, expected in (([], "fp32"), (["--precision", "bf16"], "bf16")):
        proc = odebench("audit", tmp_path / "run", *budgets, *flag, "--out", tmp_path / expected)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / expected / "audit.json").read_text())["gradient precision"] == expected
