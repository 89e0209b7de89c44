"""Result rows -> accuracy-vs-ε curves like the paper's Figures 2-3."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .tables import attack_label


def plot(df: pd.DataFrame, path: Path) -> None:
    """One panel per (dataset, attack); one line per model; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df.copy()
    df["attack_label"] = df.apply(attack_label, axis=1)
    groups = list(df.groupby(["dataset", "attack_label", "norm", "eps_scale"], sort=False))
    cols = min(3, max(1, len(groups)))
    rows = -(-len(groups) // cols) if groups else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, ((dataset, attack, norm, scale), g) in zip(axes.flat, groups):
        for model, r in g.groupby("model", sort=False):
            r = r.sort_values("eps")
            ax.plot(r["eps"] * scale, 100 * r["robust_acc"], marker="o", label=model)
        ax.set_title(f"{attack}\n{dataset}", fontsize=9)
        ax.set_xlabel(f"{norm.upper()} ε" + ("" if scale == 1 else f" (×1/{scale:g})"))
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Lay out, write atomically as PNG (a crash never leaves half an image), and close `fig`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
