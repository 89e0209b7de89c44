"""Print the strong preset's E2 table and budget curves side by side as Markdown (docs/REPRODUCTION.md).

    python scripts/strong/tables.py [runs/converge_strong] [runs/reproduce/strong/E2/mnist/results.csv]

E2: rows attack × model, columns ε. Curves: one table per ε, rows the ladder's rungs, columns
the four models, each cell the per-sample worst-case robust accuracy (%) after that rung on the
same 200 test images ('·': rung not run).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

MODELS = ("yan_twin", "yan_ode", "yan_twin-noise", "yan_ode-noise")
RUNGS = ("pgd10", "pgd40", "pgd100", "pgd1000", "pgd1000x5", "apgd-ce", "apgd-t", "autoattack")


def curves(root: Path) -> pd.DataFrame:
    """Every budget.csv under `root`, one row per (model, ε, rung)."""
    frames = [pd.read_csv(f) for f in sorted(root.glob("*/budget.csv"))]
    return pd.concat(frames).drop_duplicates(["model", "eps", "budget"], keep="last")


def e2_table(path: Path) -> None:
    """The strong preset's E2 (FGSM, PGD-40) as robust accuracy (%) per model and ε."""
    df = pd.read_csv(path)
    eps = sorted(e for e in df["eps"].unique() if e > 0)
    print(f"| attack | model | clean | " + " | ".join(f"ε={e:g}" for e in eps) + " |")
    print("|---|---|---|" + "---|" * len(eps))
    for attack in dict.fromkeys(df["attack"]):
        for m in MODELS:
            rows = df[(df["attack"] == attack) & (df["model"] == m)]
            if rows.empty:
                continue
            cells = [rows[rows["eps"] == e] for e in eps]
            print(f"| {attack.upper() if attack == 'fgsm' else 'PGD-40'} | {m} | {100 * rows['clean_acc'].iloc[0]:.1f} | "
                  + " | ".join("·" if c.empty else f"{100 * c['robust_acc'].iloc[0]:.1f}" for c in cells) + " |")
    print()


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/converge_strong")
    e2 = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/reproduce/strong/E2/mnist/results.csv")
    if e2.exists():
        e2_table(e2)
    df = curves(root)
    for eps in sorted(df["eps"].unique(), reverse=True):
        at = df[df["eps"] == eps]
        print(f"ε = {eps:g} (n = {int(at['n'].iloc[0])}; clean: "
              + ", ".join(f"{m} {100 * at[at['model'] == m]['clean_acc'].iloc[0]:.1f}" for m in MODELS
                          if (at["model"] == m).any()) + ")\n")
        print("| rung | " + " | ".join(MODELS) + " |")
        print("|---|" + "---|" * len(MODELS))
        for rung in RUNGS:
            cells = []
            for m in MODELS:
                hit = at[(at["model"] == m) & (at["budget"] == rung)]
                cells.append("·" if hit.empty else f"{100 * hit['robust_acc'].iloc[0]:.1f}")
            if any(c != "·" for c in cells):
                print(f"| {rung} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
