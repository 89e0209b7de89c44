"""`odebench claims check`: run a claim's published protocol on the released weights, then the
converged ladder and the masking audit, and judge every published number.

1. Weights: the released file as downloaded (a pickled `torch.save(model)` is read by the safe
   converter, nothing in it runs) or its converted tensors; the file's SHA-256 is compared with the
   ledger's, and the tensors load strictly into the registered architecture.
2. Protocol: the published attacks at the published radii, each radius on its own, on the
   paper's own test images (`Sampling`), as `odebench attack --independent-eps` runs them.
3. Ladder: `odebench converge`'s rungs (PGD-10 ... AutoAttack, each on the survivors of the
   earlier ones; PGD steps of 2.5·ε/steps) at the ladder's radii on the first `n_samples` of
   those images: the per-sample worst case, the number a converged attack gives.
4. Audit: the gradient-masking checks of `odebench audit` on the first images.

Verdict per published number (percent, tolerance `tol`, default 3 points):
- refuted: the published attack itself measures more than `tol` below the claim;
- overstated: the protocol holds, but the ladder's worst case is more than `tol` below the claim
  (by how much, and the first rung that went below);
- reproduced: within `tol` under the protocol, and the ladder (where it ran) does not fall below;
- not reproduced: the protocol measures more than `tol` above the claim.
For a certified claim (a lower bound no valid attack may cross): violated when any attack goes
below the certificate (a bug, ours or theirs), else consistent.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import sha256_file
from ..data import load_dataset
from ..errors import UserError, existing_file, option
from ..evaluation.budget import BudgetCurves, BudgetJob, parse_budgets, write_budget_files
from ..evaluation.request import AttackJob, AttackSpec
from ..evaluation.target import Target
from ..evaluation.session import Evaluation, run_evaluation
from ..ode_backends import DEFAULT_ODE_BACKEND
from ..precision import resolve_precision
from ..registry import MODELS
from ..progress import SILENT, Reporter
from ..runinfo import atomic_write_json, atomic_write_text, provenance, resolve_device, seed_everything
from ..pixel_model import check_logits
from ..user_model import module_meta
from ..weight_files import load_registered_weights, read_weights, state_sha256
from .ledger import Claim, PublishedNumber

REPRODUCED, OVERSTATED, REFUTED, NOT_REPRODUCED = "reproduced", "overstated", "refuted", "not reproduced"
CONSISTENT, VIOLATED = "consistent", "violated"
_SEVERITY = (VIOLATED, REFUTED, OVERSTATED, NOT_REPRODUCED, REPRODUCED, CONSISTENT)


@dataclass
class NumberCheck:
    """One published number, what the protocol and the ladder measured, and the verdict."""

    attack: str
    eps: float
    claimed: float
    measured: float | None  # the published protocol, percent
    ladder: float | None  # the ladder's worst case at this radius, percent (None: not run there)
    ladder_last: str  # the ladder's last rung
    first_below: str  # the first rung more than `tol` below the claim ('' if none)
    verdict: str
    why: str


def judge(claimed: float, measured: float | None, ladder: float | None, first_below: str, last: str,
          tol: float, kind: str = "empirical") -> tuple[str, str]:
    """The verdict on one published number (all in percent) and why, in words."""
    if kind == "certified":
        lowest = min(v for v in (measured, ladder) if v is not None)
        if lowest < claimed:
            return VIOLATED, (f"an attack leaves {lowest:.1f}% below the certified {claimed:.1f}%: "
                              "a certificate is a lower bound, so this is a bug (ours or theirs)")
        return CONSISTENT, f"no attack goes below the certified {claimed:.1f}% (lowest {lowest:.1f}%)"
    if measured is None:
        raise ValueError("an empirical claim needs its protocol measurement")
    if measured < claimed - tol:
        return REFUTED, f"the protocol's attack itself leaves {measured:.1f}% (claimed {claimed:.1f}%)"
    if ladder is not None and ladder < claimed - tol:
        return OVERSTATED, (f"by {claimed - ladder:.1f} points: the ladder up to {last} leaves {ladder:.1f}% "
                            f"(first below {claimed - tol:.1f}%: {first_below})")
    if measured > claimed + tol:
        return NOT_REPRODUCED, f"the protocol's attack leaves {measured:.1f}%, more than claimed ({claimed:.1f}%)"
    ladder_text = f", the ladder up to {last} {ladder:.1f}%" if ladder is not None else ""
    return REPRODUCED, f"the protocol's attack leaves {measured:.1f}%{ladder_text} (claimed {claimed:.1f}%)"


def overall(verdicts: list[str]) -> str:
    """The claim's verdict: its most severe number's."""
    return min(verdicts, key=_SEVERITY.index)


def released_tensors(path: Path) -> dict[str, Tensor]:
    """Tensors of a weights file as released, whatever its suffix (.pth, .pth.tar, ...): safetensors,
    a state dict (`torch.load(weights_only=True)`), else what the safe converter finds in it (a
    pickled whole model, or a dict holding the state dict under 'state_dict' or 'model'); no code
    in the file runs."""
    if path.suffix.lower() == ".safetensors":
        return read_weights(path)
    existing_file(path, "weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a pickled module: weights_only refuses it
        state = None
    if isinstance(state, dict) and state and all(isinstance(v, Tensor) for v in state.values()):
        return state
    from ..convert import collect_tensors, safe_load, select

    obj, _ = safe_load(path)
    tensors = collect_tensors(select(obj, None))
    if not tensors:
        raise UserError(f"{option('weights')} '{path}' holds no tensors")
    return {k: v.detach().clone() for k, v in tensors.items()}


def load_released(claim: Claim, weights: Path, info: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The claim's architecture with `weights` loaded strictly, and what is known of the file."""
    if not Path(weights).is_file():
        raise UserError(f"{option('weights')} '{weights}' does not exist; download it from {claim.weights.url}")
    model = MODELS.get(claim.model).build(info, **claim.model_options)
    loaded = load_registered_weights(model, Path(weights), released_tensors(Path(weights)))
    digest = sha256_file(Path(weights))
    return model.eval(), {"file": str(weights), "sha256": digest, "released_sha256": claim.weights.sha256,
                          "is_released_file": digest == claim.weights.sha256, "tensors_sha256": state_sha256(loaded)}


def _protocol_specs(claim: Claim) -> list[tuple[AttackSpec, list[float]]]:
    """One attack spec per (attack, options) of the published numbers, with its radii."""
    groups: dict[str, tuple[AttackSpec, list[float]]] = {}
    for number in claim.numbers:
        spec = AttackSpec.parse(number.attack, dict(number.options))
        groups.setdefault(spec.args_text + number.attack, (spec, []))[1].append(number.eps)
    return list(groups.values())


def _ladder_rows(claim: Claim, target: Target, x: Tensor, y: Tensor, info: Any, out: Path, budgets: str,
                 seed: int, device: torch.device, precision: str, reporter: Reporter) -> list[dict[str, Any]]:
    # PGD rungs step 2.5·ε/steps (converge's 'scaled'): the paper's 0.01 cannot reach ε = 0.3 in 10 steps
    job = BudgetJob(checkpoints=[], eps=list(claim.ladder_eps), out=out, budgets=parse_budgets(budgets),
                    step_size=None, n_samples=len(y), seed=seed, device=str(device), precision=precision)
    rows: list[dict[str, Any]] = []
    with reporter.bars() as bars, torch.inference_mode(False):
        curves = BudgetCurves(job, x, y, device, info.label, bars, resolve_precision(precision, device))
        for eps in claim.ladder_eps:
            rows += curves.curve(target, eps)
    write_budget_files(rows, out)
    return rows


def _ladder_at(rows: list[dict[str, Any]], eps: float, claimed: float, tol: float) -> tuple[float | None, str, str]:
    """(worst case in percent, last rung, first rung below claimed - tol) of the ladder at `eps`."""
    curve = [r for r in rows if abs(r["eps"] - eps) < 1e-9]
    if not curve:
        return None, "", ""
    below = next((r["budget"] for r in curve if 100 * r["robust_acc"] < claimed - tol), "")
    return round(100 * curve[-1]["robust_acc"], 2), curve[-1]["budget"], below


def check_claim(claim: Claim, weights: Path, out: Path, *, data_dir: str | None = None, n_samples: int | None = None,
                protocol_samples: int | None = None, budgets: str | None = None, audit: bool = True,
                device: str = "cpu", seed: int = 0, precision: str = "auto",
                reporter: Reporter = SILENT) -> dict[str, Any]:
    """Run the claim's protocol, ladder and audit on `weights`; write claim.json and claim.md to
    `out` (and each step's own files below it); return the report as a dict. Resumable: finished
    cells and rungs are reused."""
    from ..diagnostics.checks import run_checks
    from ..diagnostics.command import audit_config
    from ..diagnostics.audit_report import verdict_line, write_audit

    for name, value in (("protocol_samples", protocol_samples), ("n_samples", n_samples)):
        if value is not None and value < 1:
            raise UserError(f"{option(name)} must be >= 1, got {value}")
    dev = resolve_device(device)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option('out')} '{out}' is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    splits = load_dataset(claim.dataset, data_dir)
    info = splits.info
    model, released = load_released(claim, weights, info)
    if not released["is_released_file"]:
        reporter.note("warning:", f"'{weights}' is not the released file (SHA-256 {released['sha256'][:12]}..., "
                      f"released {claim.weights.sha256[:12]}...): the verdict is about these weights")
    idx = claim.sampling.indices(splits.test_y)
    if protocol_samples is not None:
        idx = idx[:protocol_samples]
    x, y = splits.test_x[idx], splits.test_y[idx]
    n_ladder = min(len(y), claim.ladder_samples if n_samples is None else n_samples)
    meta = module_meta(claim.model, info, released["tensors_sha256"], name=claim.name, weights=str(weights))
    target = Target.from_module(model, meta, dev, DEFAULT_ODE_BACKEND, path=Path(weights), label=claim.name)
    check_logits(target.model, info, x[:2].to(dev), claim.name)
    seed_everything(seed)

    reporter.rule(f"{claim.name}: the published protocol ({len(y)} images)")
    protocol_rows: list[dict[str, Any]] = []
    for spec, radii in _protocol_specs(claim):  # each attack at its own published radii only
        job = AttackJob(checkpoints=[], attacks=[spec], eps=sorted(set(radii)), out=out / "protocol", n_samples=len(y),
                        seed=seed, device=str(dev), precision=precision, independent_eps=True,
                        extra={"claim": claim.name})
        protocol_rows += run_evaluation(Evaluation(dev, [target], None, x, y, info), job, reporter.line)[0]

    reporter.rule(f"{claim.name}: the ladder ({budgets or claim.ladder_budgets}; {n_ladder} images)")
    ladder_rows = _ladder_rows(claim, target, x[:n_ladder], y[:n_ladder], info, out / "ladder",
                               budgets or claim.ladder_budgets, seed, dev, precision, reporter)

    audit_result = None
    if audit:
        n_audit = min(100, n_ladder)
        reporter.rule(f"{claim.name}: the masking audit ({n_audit} images)")
        cfg = audit_config(info, claim.ladder_eps[0] if claim.ladder_eps else None, 0.5, seed, {})
        seed_everything(seed)
        result = run_checks(target.model, x[:n_audit].to(dev), y[:n_audit].to(dev), cfg, dev, reporter)
        write_audit(out / "audit", result, {"model": claim.name, "weights_sha256": released["sha256"],
                                            "dataset": info.label, "eps (L∞)": round(cfg.eps, 6)}, provenance(seed, dev))
        audit_result = {"verdict": verdict_line(result), "n": n_audit, "eps": cfg.eps,
                        "checks": [{"check": c.name, "verdict": c.status, "explanation": c.explanation}
                                   for c in result.checks]}

    checks = [_number_check(claim, n, protocol_rows, ladder_rows) for n in claim.numbers]
    report = {
        "claim": claim.name, "title": claim.title, "paper": claim.paper, "model": claim.model, "kind": claim.kind,
        "dataset": info.label, "threat_model": claim.threat_model, "tolerance": claim.tolerance,
        "weights": released, "protocol_samples": len(y), "ladder_samples": n_ladder,
        "ladder_budgets": budgets or claim.ladder_budgets, "verdict": overall([c.verdict for c in checks]),
        "numbers": [asdict(c) for c in checks], "ladder": ladder_rows, "audit": audit_result,
        "provenance": provenance(seed, dev) | {"precision": precision},
    }
    atomic_write_json(out / "claim.json", report)
    atomic_write_text(out / "claim.md", claim_markdown(report))
    return report


def _number_check(claim: Claim, number: PublishedNumber, protocol_rows: list[dict[str, Any]],
                  ladder_rows: list[dict[str, Any]]) -> NumberCheck:
    row = next((r for r in protocol_rows if r["attack"] == number.attack and abs(r["eps"] - number.eps) < 1e-9), None)
    measured = round(100 * row["robust_acc"], 2) if row is not None else None
    ladder, last, below = _ladder_at(ladder_rows, number.eps, number.robust_acc, claim.tolerance)
    verdict, why = judge(number.robust_acc, measured, ladder, below, last, claim.tolerance, claim.kind)
    return NumberCheck(number.attack, number.eps, number.robust_acc, measured, ladder, last, below, verdict, why)


def claim_markdown(report: dict[str, Any]) -> str:
    """claim.md: claimed vs measured with the verdicts, the ladder and the audit in brief."""
    w = report["weights"]
    lines = [f"# {report['claim']}: {report['verdict']}", "", report["title"], "",
             f"- paper: {report['paper']}", f"- model: `{report['model']}` on {report['dataset']}, "
             f"{report['threat_model']}, tolerance {report['tolerance']:g} points",
             f"- weights: `{Path(w['file']).name}` SHA-256 {w['sha256']}"
             + (" (the released file)" if w["is_released_file"] else f" (NOT the released file {w['released_sha256']})"),
             f"- protocol: {report['protocol_samples']} images; ladder ({report['ladder_budgets']}): "
             f"{report['ladder_samples']} images", "",
             "| attack | ε | claimed % | published protocol % | ladder worst case % | verdict | why |",
             "|---|---|---|---|---|---|---|"]
    for c in report["numbers"]:
        measured = "" if c["measured"] is None else f"{c['measured']:.1f}"
        ladder = "" if c["ladder"] is None else f"{c['ladder']:.1f} ({c['ladder_last']})"
        lines.append(f"| {c['attack']} | {c['eps']:g} | {c['claimed']:.1f} | {measured} | {ladder} | "
                     f"**{c['verdict']}** | {c['why']} |")
    if report["ladder"]:
        lines += ["", "Ladder (each rung on the survivors of the earlier ones):", "",
                  "| ε | rung | robust % | newly broken | grad calls / image |", "|---|---|---|---|---|"]
        lines += [f"| {r['eps']:g} | {r['budget']} | {100 * r['robust_acc']:.1f} | {r['newly_broken']} | {r['grad_calls']:g} |"
                  for r in report["ladder"]]
    if report["audit"]:
        lines += ["", f"Audit ({report['audit']['n']} images, ε = {report['audit']['eps']:g}): {report['audit']['verdict']}"]
    return "\n".join(lines) + "\n"
