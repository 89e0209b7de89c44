"""odebench: adversarial robustness benchmark for Neural ODEs and ResNet-family classifiers.

Python API (docs/api.md), imported on first use so that `import robustbench_ode` stays light:
`robustbench_ode.evaluate(model, data, attacks, eps, ...)` -> the results.csv rows as a DataFrame;
`robustbench_ode.audit(model, x, y, ...)` -> the gradient-masking verdict table. (`audit` is
also the name of the audit subpackage, which is therefore callable: see `audit/__init__.py`.)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["audit", "evaluate"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from .api import evaluate

        return evaluate
    if name == "audit":
        return importlib.import_module(".audit", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
