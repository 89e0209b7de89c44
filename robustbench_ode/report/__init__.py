"""Reports: result rows -> CSV, Markdown (paper layout) and PNG curves."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..runinfo import atomic_write_text
from .plot import plot
from .tables import markdown


def render(csv_path: Path, out_dir: Path | None = None, paper: str | None = None) -> str:
    """Re-render results.md and accuracy_vs_eps.png from a results CSV; returns the Markdown."""
    csv_path = Path(csv_path)
    out_dir = Path(out_dir) if out_dir else csv_path.parent
    df = pd.read_csv(csv_path, keep_default_na=False)
    text = markdown(df, paper)
    atomic_write_text(out_dir / "results.md", text)
    if not df.empty:
        plot(df, out_dir / "accuracy_vs_eps.png")
    return text
