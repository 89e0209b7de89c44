"""odebench: adversarial robustness benchmark for Neural ODEs and ResNet-family classifiers.

Python API (docs/api.md), the functions of `robustbench_ode.api`:
`robustbench_ode.evaluate(model, data, attacks, eps, ...)` -> the results.csv rows as a DataFrame;
`robustbench_ode.audit(model, x, y, ...)` -> the gradient-masking verdict table (its checks are the
`diagnostics` subpackage).

They are imported on first use (a module `__getattr__`, PEP 562), not here: `api` loads torch,
pandas and the whole engine (about 5 s), and every `odebench` command imports this package first
(`odebench --help` takes a fraction of a second because of it).
"""
from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = ["audit", "evaluate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
