"""The one exception type for mistakes a user can fix; the CLI prints it as one line and exits 2.

A message names the settings at fault with `option("epochs")`: the name the Python API, the
config files and the CLI's parameters share (`grad_solver` for `--grad-solver`). Each front end
spells them its own way: `str(error)` as they are ("epochs must be >= 1, got 0"), the CLI as its
flags (`error.render(cli.flag)`: "--epochs must be >= 1, got 0"), so code below the CLI never
needs to know a flag. A UserError's text embedded in another message loses the marks (it is
`str()`), so re-raise a UserError rather than wrapping it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

_MARK = "\x1f"  # ASCII unit separator: never typed by a user, so it cannot clash with a path or value
_OPTION = re.compile(f"{_MARK}(\\w+){_MARK}")


def option(name: str) -> str:
    """`name` (a setting such as `epochs` or `grad_solver`) marked for use inside a UserError message."""
    return f"{_MARK}{name}{_MARK}"


class UserError(Exception):
    """Bad input from the user (unknown name, bad value, missing file, foreign checkpoint...)."""

    @property
    def options(self) -> list[str]:
        """The settings the message names with `option()`, in order."""
        return _OPTION.findall(self._template)

    def render(self, spell: Callable[[str], str] = str) -> str:
        """The message with each named setting written as `spell(name)` (default: the name itself)."""
        return _OPTION.sub(lambda match: spell(match.group(1)), self._template)

    @property
    def _template(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.render()


def first_line(exc: BaseException) -> str:
    """'TypeError: the first line of the message', for one-line errors."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def first_sentence(exc: BaseException) -> str:
    """The first sentence of a long library message (torch's explain at length)."""
    line = first_line(exc)
    return line.split(". ", 1)[0].rstrip(".")


def existing_file(path: Path | str, setting: str) -> Path:
    """`path` if it is a file, else a UserError naming `setting` (a file a setting names must exist)."""
    if not Path(path).is_file():
        raise UserError(f"{option(setting)} '{path}' does not exist")
    return Path(path)
