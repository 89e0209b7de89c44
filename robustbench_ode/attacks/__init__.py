"""Attacks, registered by name; importing this package registers them all.

Uniform call: `attack = ATTACKS.get("pgd").build(**options)` then `x_adv = attack(model, x, y, eps)`
(see `base` for the contract and the cost counters).
"""
from . import apgd, autoattack, boundary, cw, difgsm, fab, fgsm, pgd, spsa, square  # noqa: F401
from .base import Attack, FirstAdversarial, eval_mode

__all__ = ["Attack", "FirstAdversarial", "eval_mode"]
