"""`odebench convert`: a pickled checkpoint's tensors to safetensors, none of its code run."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .app import app, console


@app.command()
def convert(
    source: Path = typer.Argument(..., help="checkpoint written by torch.save: a whole model, a state dict or a dict"),
    target: Path = typer.Argument(..., help="the .safetensors file to write"),
    key: Optional[str] = typer.Option(None, help="dotted path to the weights inside the file (default: 'state_dict' "
                                      "or 'model' if present, else everything)"),
    strip_prefix: str = typer.Option("", help="remove this prefix from tensor names (e.g. 'module.' from DataParallel)"),
) -> None:
    """Convert a pickled checkpoint to safetensors without running any of its code; list names and classes."""
    from ..convert import convert as convert_pickled

    result = convert_pickled(source, target, key, strip_prefix)
    table = Table(title=f"{len(result.tensors)} tensors written to {target}")
    for column in ("name", "shape", "dtype"):
        table.add_column(column)
    for name, tensor in result.tensors.items():
        table.add_row(name, "×".join(map(str, tensor.shape)) or "scalar", str(tensor.dtype).removeprefix("torch."))
    console.print(table)
    console.print("globals the file names (stubbed, never imported): " + (", ".join(result.classes) or "none"),
                  markup=False, highlight=False, soft_wrap=True)
    if result.calls:
        calls = ", ".join(f"{name} ×{count}" for name, count in sorted(result.calls.items()))
        console.print(f"calls it asks for when loaded (none made): {calls}", markup=False, highlight=False,
                      soft_wrap=True)
