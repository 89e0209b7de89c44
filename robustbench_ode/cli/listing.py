"""`odebench list`: the registries' names, descriptions and options (from the catalogue: no torch)."""
from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..errors import UserError
from ..registry import ATTACKS, DATASETS, METHODS, MODELS
from .app import app, console


_LISTS = {"models": (MODELS, "models"), "attacks": (ATTACKS, "attacks"), "datasets": (DATASETS, "datasets"),
          "methods": (METHODS, "training methods (--method)")}


@app.command("list")
def list_cmd(
    what: Optional[str] = typer.Argument(None, help="models, attacks, datasets or methods (default: all)"),
) -> None:
    """List registered models, attacks, datasets and training methods with their options (and plugins)."""
    if what is not None and what not in _LISTS:
        raise UserError(f"cannot list '{what}' (choose models, attacks, datasets or methods)")
    for kind, (reg, title) in _LISTS.items():
        if what not in (None, kind):
            continue
        entries = list(reg)
        table = Table(title=title, show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("options (default)")
        plugins = any(entry.plugin for entry in entries)
        if plugins:
            table.add_column("plugin (distribution)")
        for entry in entries:
            options = entry.options_text(hidden=("root", "download"))
            table.add_row(entry.name, entry.description, options, *([entry.plugin] if plugins else []))
        console.print(table)
