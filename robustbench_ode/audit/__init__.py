"""Evaluation you can trust: gradient-masking sanity checks (`checks`, `odebench audit`), a
per-cell red flag for the attack runner (`looks_masked`), and Theorem 3.1's perturbation growth
along depth measured (`stability`, `odebench stability`).

The package is callable: `robustbench_ode.audit(model, x, y, ...)` is the Python API's
`robustbench_ode.api.audit` (the package and the function share the name `audit`, and Python sets
a package's attribute to its subpackage on import, so the subpackage itself answers the call).
"""
import sys
import types
from typing import Any

from .checks import AuditConfig, AuditResult, Bench, CheckResult, run_checks
from .masking import looks_masked, noise_tolerance
from .stability import depth_of, measure, stability_rows

__all__ = [
    "AuditConfig", "AuditResult", "Bench", "CheckResult", "depth_of", "looks_masked", "measure",
    "noise_tolerance", "run_checks", "stability_rows",
]


class _CallableModule(types.ModuleType):
    """This package, callable as `robustbench_ode.api.audit`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ..api import audit

        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
