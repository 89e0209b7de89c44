"""Attack-budget curves -> Markdown (rows budget, columns ε, a verdict per ε) and a log-x plot."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .plot import save_figure
from .tables import eps_label

TOLERANCE_PP = 1.0  # converged: the last two budgets within this many percentage points


def converged(robust_accs: list[float], tolerance_pp: float = TOLERANCE_PP) -> bool | None:
    """Whether the last two budgets' robust accuracies (fractions) are within `tolerance_pp`
    percentage points; None with fewer than two budgets (nothing to compare)."""
    if len(robust_accs) < 2:
        return None
    return abs(100 * (robust_accs[-2] - robust_accs[-1])) <= tolerance_pp + 1e-9


def verdict(labels: list[str], robust_accs: list[float]) -> str:
    """One line: 'converged' / 'NOT converged' with the two budgets compared."""
    ok = converged(robust_accs)
    if ok is None:
        return "no verdict (one budget: nothing to compare)"
    (a, b), (pa, pb) = labels[-2:], (100 * v for v in robust_accs[-2:])
    word = "converged" if ok else "NOT converged"
    return f"{word} ({a} {pa:.2f} → {b} {pb:.2f}, Δ {pa - pb:.2f} pp; rule: ≤ {TOLERANCE_PP:g} pp)"


def budget_markdown(df: pd.DataFrame) -> str:
    """One table per model (rows budget in ladder order, columns ε), then a verdict line per ε."""
    if df.empty:
        return "_no results yet_\n"
    out = []
    for (model, sha, dataset, scale, n), g in df.groupby(["model", "checkpoint_sha", "dataset", "eps_scale", "n"],
                                                       sort=False):
        eps_values = sorted(g["eps"].unique())
        labels = list(dict.fromkeys(g["budget"]))
        out += [f"### {model} ({sha}) on {dataset}: robust accuracy (%) vs attack budget, L∞, n = {n}", ""]
        out.append("| budget | " + " | ".join(f"ε={eps_label(e, scale)}" for e in eps_values) + " |")
        out.append("|" + "---|" * (len(eps_values) + 1))
        by_eps = {e: g[g["eps"] == e] for e in eps_values}
        out.append("| clean | " + " | ".join(f"{100 * r['clean_acc'].iloc[0]:.2f}" for r in by_eps.values()) + " |")
        for label in labels:
            cells = []
            for r in by_eps.values():
                hit = r[r["budget"] == label]
                cells.append("–" if hit.empty else f"{100 * hit['robust_acc'].iloc[0]:.2f}")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
        for e, r in by_eps.items():
            out.append(f"- ε={eps_label(e, scale)}: {verdict(list(r['budget']), list(r['robust_acc']))}")
        out.append("")
    out.append("Each point is the per-sample worst case over every budget up to it (a sample broken once stays "
               "broken); budget.csv has the cumulative gradient calls per sample.")
    return "\n".join(out) + "\n"


def budget_plot(df: pd.DataFrame, path: Path) -> None:
    """Robust accuracy vs cumulative gradient calls per sample (log x), one line per model × ε."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (model, eps, scale), g in df.groupby(["model", "eps", "eps_scale"], sort=False):
        line = ax.plot(g["grad_calls"], 100 * g["robust_acc"], marker="o", label=f"{model} ε={eps_label(eps, scale)}")
        for calls, acc, label in zip(g["grad_calls"], g["robust_acc"], g["budget"]):
            if calls > 0:
                ax.annotate(label, (calls, 100 * acc), fontsize=6, color=line[0].get_color(),
                            textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log", nonpositive="mask")
    ax.set_xlabel("gradient calls per sample, cumulative (log)")
    ax.set_ylabel("robust accuracy (%), worst case so far")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    save_figure(fig, path)
