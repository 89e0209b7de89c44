"""Cheap red flags for gradient masking in attack results, and the noise level they tolerate.

The attack runner warns with `looks_masked` after each model x attack series; the audit
(`diagnostics.checks`, `diagnostics.indicators`) judges its own numbers with `noise_tolerance`
and `LINF_ALL_GREY`. They live here, in the layer the audit builds on, so that the runner never
imports the audit.

The rules follow the sanity checks of Carlini et al. (2019, "On Evaluating Adversarial
Robustness", Sec. 5) and Athalye et al. (2018, "Obfuscated Gradients Give a False Sense of
Security"): accuracy must fall as ε grows, and reach chance once ε is large enough that no
classifier can be robust.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

# At L∞ radius 0.5 every image in [0, 1] can be moved to the constant 0.5-grey image, so all
# samples can be sent to one point: no classifier keeps more than the largest class share.
LINF_ALL_GREY = 0.5
DEFAULT_MARGIN = 0.1


def noise_tolerance(acc: float, n: int) -> float:
    """How much two accuracies on the same `n` samples may differ by chance alone.

    Two binomial standard errors of `acc`, and never less than one sample: differences within
    this are what reseeding an attack already moves.
    """
    if n < 1:
        return 0.0
    return max(1.0 / n, 2.0 * math.sqrt(max(acc * (1.0 - acc), 0.0) / n))


def looks_masked(
    rows: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    num_classes: int = 10,
    margin: float = DEFAULT_MARGIN,
) -> str | None:
    """A one-line warning when attack results look gradient-masked, else None.

    `rows` is one result row or the rows of one model x attack over several ε (mappings with
    `eps` and `robust_acc`; optional `norm` (default "linf") and `n` (samples, default 1000)).
    Flags (1) an L∞ cell at ε >= 0.5 whose robust accuracy exceeds chance (1/num_classes) by more
    than `margin`: at that radius every image can be turned into the same grey image; and
    (2) robust accuracy that rises with ε by more than `noise_tolerance` (same attack, same norm).
    """
    series = [rows] if isinstance(rows, Mapping) else list(rows)
    chance = 1.0 / num_classes
    for row in series:
        eps, acc = float(row["eps"]), float(row["robust_acc"])
        if row.get("norm", "linf") == "linf" and eps >= LINF_ALL_GREY and acc > chance + margin:
            return (f"robust accuracy {acc:.3f} at L∞ ε={eps:g} is above chance ({chance:.2f}) although every "
                    "image can be turned grey at this radius: gradients may be masked (run odebench audit)")
    by_norm: dict[str, list[Mapping[str, Any]]] = {}
    for row in series:
        by_norm.setdefault(str(row.get("norm", "linf")), []).append(row)
    for norm_rows in by_norm.values():
        ordered = sorted(norm_rows, key=lambda r: float(r["eps"]))
        for lo, hi in zip(ordered, ordered[1:]):
            a_lo, a_hi = float(lo["robust_acc"]), float(hi["robust_acc"])
            n = int(hi.get("n") or 1000)
            if float(hi["eps"]) > float(lo["eps"]) and a_hi - a_lo > noise_tolerance(a_lo, n):
                return (f"robust accuracy rises from {a_lo:.3f} at ε={float(lo['eps']):g} to {a_hi:.3f} at "
                        f"ε={float(hi['eps']):g}: a larger ball can only help the attacker, so the attack "
                        "is failing (gradients may be masked; run odebench audit)")
    return None
