"""Diagnostics of a model's evaluation: gradient-masking sanity checks (`checks`, `odebench audit`,
`robustbench_ode.audit`) and Theorem 3.1's perturbation growth along depth measured (`stability`,
`odebench stability`). The attack runner's per-cell red flag and the noise level these checks
tolerate live below both, in `evaluation.masking`.
"""
from .audited import AuditConfig, AuditedModel, CheckResult
from .checks import AuditResult, run_checks
from .stability import depth_of, measure, stability_rows

__all__ = ["AuditConfig", "AuditResult", "AuditedModel", "CheckResult", "depth_of", "measure", "run_checks",
           "stability_rows"]
