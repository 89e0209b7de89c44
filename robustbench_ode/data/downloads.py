"""Official-file datasets: fetch through torchvision quietly, and say exactly which files are missing."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable, Sequence
from urllib.error import URLError

from ..errors import UserError


def one_line(exc: BaseException) -> str:
    """An exception's message squeezed onto one line (torchvision's messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def fetch_quietly(fetch: Callable[[], object], what: str, root: Path) -> None:
    """Call `fetch` (a torchvision constructor with download=True) with stdout/stderr swallowed."""
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            fetch()
    except (RuntimeError, OSError, URLError) as exc:
        raise UserError(f"could not download {what} into {root}: {one_line(exc)}") from exc


def require_files(what: str, folder: Path, names: Sequence[str], hint: str) -> None:
    """Raise a one-line UserError naming the expected files if any of `folder/names` is absent."""
    missing = [name for name in names if not (folder / name).is_file()]
    if not missing:
        return
    which = "" if len(missing) == len(names) else f" (missing: {', '.join(missing)})"
    raise UserError(f"{what} not found: expected {folder}/{{{','.join(names)}}}{which}; {hint}")
