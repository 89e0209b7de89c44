"""The built-in training methods: importing this module registers standard, pgd, trades and yopo in
`registry.METHODS` (which imports it on first use), so that importing `training.config` alone
imports no torch."""
from . import adversarial, methods, trades, yopo  # noqa: F401
