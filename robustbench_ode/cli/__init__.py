"""`odebench` command line: parse, validate, print. Work happens in the modules it calls.

One module per group of commands, each registering on `app.app` (imported here in the order
`--help` lists them); every command checks its arguments before it imports torch or the engine
(docs/architecture.md), so `--help`, `list` and a bad argument answer in a fraction of a second.
"""
from __future__ import annotations

import os
import sys

from ..errors import UserError
from . import listing, train, attack, experiments, diagnose, ladder, convert, claims  # noqa: F401,I001 (registration, in order)
from .app import app, console, fail, flag

__all__ = ["app", "flag", "main"]


def main() -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun only rank 0 reports; errors still reach stderr
        console.quiet = True
    try:
        rc = app(standalone_mode=False)
    except UserError as exc:
        fail(exc.render(flag), 2)
    except KeyboardInterrupt:
        fail("interrupted; finished work is saved (rerun the same command, with --resume for train)", 130)
    except Exception as exc:  # Typer's (vendored) Click exceptions: usage errors, abort, no-args help
        kind = type(exc).__name__
        if kind == "NoArgsIsHelpError":
            sys.exit(0)
        if kind == "Abort":
            fail("interrupted; finished work is saved (rerun the same command, with --resume for train)", 130)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            fail(exc.format_message(), exc.exit_code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)
