"""A resumable results store: one CSV row per finished cell, rewritten atomically.

Rerunning the same command reads the CSV, skips every cell whose key is present, and appends new
rows; a kill loses at most the cell in progress and never leaves a half-written file. A nested ε
series whose stored chain no longer fits the grid has its rows above the fit removed and
recomputed (see `evaluation.nested`).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from .. import distributed
from ..errors import UserError, option
from ..runinfo import atomic_write_text

# A results.csv row, column by column in the order written: what the cell is (`Runner._row`), then
# what its attack found (`Runner._finish`; a `worst case` row fills the same columns).
CELL_COLUMNS = ("dataset", "model", "architecture", "training", "checkpoint", "checkpoint_sha", "code_sha", "source",
                "source_sha", "attack", "attack_args", "norm", "ode_backend", "precision", "eps", "eps_mode",
                "eps_scale", "n", "seed")
OUTCOME_COLUMNS = ("clean_acc", "robust_acc", "unverified", "failed_starts", "attack_stats", "grad_calls", "queries",
                   "nfe_forward", "wall_s")
COLUMNS = CELL_COLUMNS + OUTCOME_COLUMNS
# The cell columns that identify a cell, in the order its key tuple (and the files named by it) uses.
KEY = ("checkpoint_sha", "code_sha", "source_sha", "ode_backend", "precision", "attack", "attack_args", "eps",
       "eps_mode", "n", "seed")
# key columns that results written before they existed lack; such rows read as their default here
# (code_sha: the source file hash of a model given as code, '' for checkpoints; precision: of the
# attack's gradients, always fp32 before --precision existed; eps_mode: every radius was attacked
# independently before nested grids existed, see evaluation.nested)
LATER_KEYS = {"ode_backend": "", "code_sha": "", "precision": "fp32", "eps_mode": "independent"}
STR_COLUMNS = {"checkpoint_sha": str, "code_sha": str, "source_sha": str, "ode_backend": str, "precision": str,
               "eps_mode": str}


def schema_row(columns: tuple[str, ...], values: dict[str, Any]) -> dict[str, Any]:
    """`values` as the `columns` of a row, in their order; a missing or unknown column is a bug."""
    if set(values) != set(columns):
        raise ValueError(f"row columns differ from the schema: missing {sorted(set(columns) - set(values))}, "
                         f"unknown {sorted(set(values) - set(columns))}")
    return {column: values[column] for column in columns}


class ResultStore:
    """Rows of finished cells in `path` (CSV), keyed by KEY."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if self.path.exists():
            try:
                df = pd.read_csv(self.path, keep_default_na=False, dtype=STR_COLUMNS)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
                raise UserError(f"'{self.path}' exists but is not a results CSV; choose another {option('out')}") from None
            for column, default in LATER_KEYS.items():
                if column not in df.columns:
                    df[column] = default
            missing = [k for k in KEY if k not in df.columns]
            if missing:
                raise UserError(f"'{self.path}' is not an odebench results CSV (missing {', '.join(missing)})")
            self.rows = df.to_dict("records")

    @staticmethod
    def key(row: dict[str, Any]) -> tuple:
        """The identity of a cell (floats rounded so CSV round trips compare equal)."""
        return tuple(round(float(row[k]), 10) if k == "eps" else str(row.get(k, LATER_KEYS[k]) if k in LATER_KEYS else row[k])
                     for k in KEY)

    @staticmethod
    def series_key(row: dict[str, Any]) -> tuple:
        """The identity of a cell's ε series: its key without ε."""
        return tuple(v for k, v in zip(KEY, ResultStore.key(row)) if k != "eps")

    def has(self, row_key: dict[str, Any]) -> bool:
        k = self.key(row_key)
        return any(self.key(r) == k for r in self.rows)

    def get(self, row_key: dict[str, Any]) -> dict[str, Any] | None:
        k = self.key(row_key)
        return next((r for r in self.rows if self.key(r) == k), None)

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Append finished rows and rewrite the CSV atomically."""
        self.rows.extend(rows)
        self._write()

    def _write(self) -> None:
        if not distributed.is_main():  # under torchrun every process keeps the rows; rank 0 writes them
            return
        buf = io.StringIO()
        pd.DataFrame(self.rows).to_csv(buf, index=False)
        atomic_write_text(self.path, buf.getvalue())

    def replace(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Put `new` where the row `old` (taken from `rows`) stands and rewrite the CSV atomically."""
        self.rows = [new if r is old else r for r in self.rows]
        self._write()

    def remove(self, rows: list[dict[str, Any]]) -> None:
        """Drop these rows (taken from `rows`) and rewrite the CSV atomically."""
        drop = {id(r) for r in rows}
        self.rows = [r for r in self.rows if id(r) not in drop]
        self._write()

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)
