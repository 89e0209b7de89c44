"""Stability rows -> CSV, a per-model summary table, and an amplification-vs-depth figure on
which ResNets with different h and Neural ODEs share one axis (fraction of depth)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from ..progress import Table
from ..report.plot import save_figure
from ..runinfo import atomic_write_text

COLUMNS = ["model", "kind", "size", "depth", "time", "position", "amplification", "amplification_max", "lipschitz"]


def write_csv(rows: list[dict], path: Path) -> None:
    """Long-form CSV, one row per (model, kind, size, depth index)."""
    atomic_write_text(Path(path), pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False))


def summary(rows: list[dict]) -> list[dict]:
    """Per (model, kind, size): the largest mean amplification over depth, where it occurs, and
    the largest Lipschitz ratio K of any block's field / of f at any grid time."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    out = []
    for (model, kind, size), g in df.groupby(["model", "kind", "size"], sort=False):
        top = g.loc[g["amplification"].idxmax()] if g["amplification"].notna().any() else g.iloc[0]
        out.append({"model": model, "kind": kind, "size": size, "max amplification": float(top["amplification"]),
                    "at depth": int(top["depth"]), "final amplification": float(g["amplification"].iloc[-1]),
                    "max K": float(g["lipschitz"].max())})
    return out


def summary_table(rows: list[dict]) -> Table:
    """The summary as a table, numbers aligned right."""
    columns = ("model", "kind", "size", "max amplification", "at depth", "final amplification", "max K")
    return Table("perturbation growth along depth (Theorem 3.1)", columns,
                 [(r["model"], r["kind"], f"{r['size']:g}", f"{r['max amplification']:.3g}", str(r["at depth"]),
                   f"{r['final amplification']:.3g}", f"{r['max K']:.3g}") for r in summary(rows)],
                 right=columns[2:])


def plot_amplification(rows: list[dict], path: Path) -> None:
    """One panel per perturbation kind; mean amplification vs fraction of depth, log scale; one
    colour per model, one line style per size. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(rows, columns=COLUMNS)
    kinds = list(dict.fromkeys(df["kind"]))
    models = list(dict.fromkeys(df["model"]))
    sizes = sorted(set(df["size"]))
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(5.2 * max(1, len(kinds)), 3.8), squeeze=False)
    for ax, kind in zip(axes.flat, kinds):
        for i, model in enumerate(models):
            for j, size in enumerate(sizes):
                g = df[(df["kind"] == kind) & (df["model"] == model) & (df["size"] == size)].sort_values("depth")
                if len(g) and g["amplification"].gt(0).any():
                    ax.plot(g["position"], g["amplification"], color=f"C{i % 10}", linestyle=styles[j % len(styles)],
                            marker="." if len(g) < 40 else None, label=f"{model}, |δ|={size:g}")
        ax.set_yscale("log")
        ax.set_title(f"{kind} input perturbations", fontsize=9)
        ax.set_xlabel("fraction of depth (block n/N, or t/t1)")
        ax.set_ylabel("|z_n − y_n| / |z_0 − y_0|")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    save_figure(fig, path)
