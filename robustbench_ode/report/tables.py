"""Result rows -> Markdown in the paper's Table 1 layout (rows attack x model, columns ε)."""
from __future__ import annotations

import json

import pandas as pd

from .published import PAPER, lookup, lookup_clean


def eps_label(eps: float, scale: float) -> str:
    """ε as the user wrote its grid: pixel units, or e.g. 8 on a [0, 255] scale."""
    v = eps * scale
    return f"{v:.4g}" if scale == 1 else f"{v:.4g}/{scale:g}"


def attack_text(row: pd.Series | dict) -> str:
    """'pgd steps=5': the attack name with its non-default settings; 'worst case (fgsm, pgd steps=5)'
    for the per-sample worst case over several attacks (`evaluation.worst_case`)."""
    args = json.loads(row["attack_args"]) if isinstance(row["attack_args"], str) and row["attack_args"] else {}
    if row["attack"] == "worst case":
        return f"worst case ({args.get('of', '')})"
    return row["attack"] + (" " + " ".join(f"{k}={v}" for k, v in sorted(args.items())) if args else "")


def attack_label(row: pd.Series) -> str:
    """Attack name, with its non-default settings, transfer source and independent ε grid if any."""
    text = attack_text(row)
    if row.get("source"):
        text += f" (from {row['source']})"
    if row.get("eps_mode") == "independent":  # nested is the default; results without the column say nothing
        text += " (independent ε)"
    return text


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _with_paper(ours: float, paper: float | None) -> str:
    if paper is None:
        return _pct(ours)
    return f"{_pct(ours)} (paper {paper:.2f}, Δ {100 * ours - paper:+.2f})"


def markdown(df: pd.DataFrame, paper: str | None = None) -> str:
    """Render rows as one table per (dataset, norm, ε scale, n); `paper` adds published numbers.

    Rows over different numbers of samples never share a table (a grid rerun on another n, e.g.
    after a preset change, shows as its own table instead of mixing the two)."""
    if df.empty:
        return "_no results yet_\n"
    df = df.copy()
    df["attack_label"] = df.apply(attack_label, axis=1)
    for col, default in (("training", "standard"), ("source", "")):
        if col not in df.columns:
            df[col] = default
    df["source"] = df["source"].fillna("")
    out = []
    if paper:
        out.append(f"Published numbers: {PAPER[paper].title}" + (f" — {PAPER[paper].shape}" if PAPER[paper].shape else ""))
        out.append("")
    for (dataset, norm, scale, n), g in df.groupby(["dataset", "norm", "eps_scale", "n"], sort=False):
        eps_values = sorted(g["eps"].unique())
        out.append(f"### Robust accuracy (%) on {dataset}, {norm.upper()} ε, n = {n}")
        out.append("")
        header = ["attack", "model", "training", "clean"] + [f"ε={eps_label(e, scale)}" for e in eps_values]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for (attack, model), r in g.groupby(["attack_label", "model"], sort=False):
            first = r.iloc[0]
            arch, training = first["architecture"], first["training"]
            clean_paper = lookup_clean(paper, dataset, arch, training) if paper else None
            cells = [attack, f"{model} ({arch})", training, _with_paper(first["clean_acc"], clean_paper)]
            by_eps = {round(float(e), 10): v for e, v in zip(r["eps"], r["robust_acc"])}
            for e in eps_values:
                v = by_eps.get(round(float(e), 10))
                ref = lookup(paper, dataset, first["attack"], arch, training, e) if paper else None
                cells.append("–" if v is None else _with_paper(v, ref))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
