"""Evaluation you can trust: gradient-masking sanity checks (`checks`, `odebench audit`), a
per-cell red flag for the attack runner (`looks_masked`), and Theorem 3.1's perturbation growth
along depth measured (`stability`, `odebench stability`)."""
from .checks import AuditConfig, AuditResult, Bench, CheckResult, run_checks
from .masking import looks_masked, noise_tolerance
from .stability import depth_of, measure, stability_rows

__all__ = [
    "AuditConfig", "AuditResult", "Bench", "CheckResult", "depth_of", "looks_masked", "measure",
    "noise_tolerance", "run_checks", "stability_rows",
]
