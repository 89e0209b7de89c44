"""Audit results as a verdict line, a table for the reporter, Markdown and JSON."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..progress import Table, Tone
from ..runinfo import atomic_write_json, atomic_write_text
from .checks import FAIL, NA, PASS, WARN, AuditResult

TONE: dict[str, Tone] = {PASS: "good", WARN: "caution", FAIL: "bad", NA: "muted"}


def numbers_text(numbers: dict[str, Any]) -> str:
    """'key value, key value' in insertion order."""
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items())


def verdict_line(result: AuditResult) -> str:
    """One sentence saying whether robust accuracies from gradient attacks can be trusted."""
    counted = [c for c in result.checks if c.status != NA]
    failed = [c.name for c in counted if c.status == FAIL]
    warned = [c.name for c in counted if c.status == WARN]
    if failed:
        return (f"verdict: FAIL ({len(failed)} of {len(counted)} checks failed: {'; '.join(failed)}): gradient-based "
                "robust accuracy of this model is not trustworthy")
    if warned:
        return f"verdict: WARN ({len(warned)} of {len(counted)} checks warned: {'; '.join(warned)}): look closer"
    return f"verdict: PASS (all {len(counted)} applicable checks): no sign of gradient masking"


def verdict_table(result: AuditResult, title: str = "gradient-masking audit") -> Table:
    """The checks as a table: name, numbers, pass/warn/fail (in its tone), explanation."""
    return Table(title, ("check", "numbers", "verdict", "explanation"),
                 [(c.name, numbers_text(c.numbers), (c.status, TONE[c.status]), c.explanation) for c in result.checks],
                 bold=("check",), lines=True)


def to_markdown(result: AuditResult, header: dict[str, Any]) -> str:
    """audit.md: what was audited, the verdict, one table row per check, and the settings."""
    lines = ["# Gradient-masking audit", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [f"- samples: {result.n} (clean accuracy {result.clean_acc:.4f}, chance {result.chance:.4f})", ""]
    lines += [f"**{verdict_line(result)}**", ""]
    lines += ["| check | verdict | numbers | explanation | seconds |", "|---|---|---|---|---|"]
    for c in result.checks:
        lines.append(f"| {c.name} | {c.status} | {numbers_text(c.numbers)} | {c.explanation} | {c.seconds:g} |")
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in asdict(result.config).items()), "",
              "Checks after Carlini et al. (2019), *On Evaluating Adversarial Robustness*, and Athalye et al. "
              "(2018), *Obfuscated Gradients Give a False Sense of Security*; indicators of attack failure after "
              "Pintor et al. (2022), *Indicators of Attack Failure*. `noise` is two binomial standard "
              "errors (at least one sample) of the accuracy compared against.", ""]
    return "\n".join(lines)


def to_json(result: AuditResult, header: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """audit.json: every number of the report plus provenance."""
    return {
        **header,
        "verdict": result.verdict,
        "verdict_line": verdict_line(result),
        "n": result.n,
        "clean_acc": result.clean_acc,
        "chance": result.chance,
        "config": asdict(result.config),
        "checks": [asdict(c) for c in result.checks],
        "provenance": provenance,
    }


def write_audit(out: Path, result: AuditResult, header: dict[str, Any], provenance: dict[str, Any]) -> None:
    """Write audit.md and audit.json into `out`, atomically."""
    out = Path(out)
    atomic_write_text(out / "audit.md", to_markdown(result, header))
    atomic_write_json(out / "audit.json", to_json(result, header, provenance))
