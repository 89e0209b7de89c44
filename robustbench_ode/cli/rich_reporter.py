"""The CLI's `progress.Reporter`: lines, notes, tables and verdicts on a rich console, progress as
a rich status line and rich bars."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.status import Status
from rich.table import Table as RichTable
from rich.text import Text

from ..progress import Cell, Table, Tone

TONE_STYLE: dict[Tone, str] = {"good": "green", "caution": "yellow", "bad": "bold red", "muted": "dim"}


class RichBars:
    """One rich bar at a time over a `Progress`: a new bar hides the previous one."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def start(self, label: str, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.update(self.task, visible=False)
        self.task = self.progress.add_task(label, total=total, status="")

    def update(self, completed: int, total: int | None = None, *, label: str | None = None,
               status: str | None = None) -> None:
        if self.task is None:
            return
        fields = {"status": status} if status is not None else {}
        self.progress.update(self.task, completed=completed, total=total, description=label, **fields)


class RichReporter:
    """Reports to a rich `Console` (user text is never read as rich markup)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def line(self, text: str) -> None:
        self.console.print(text, markup=False)

    def note(self, label: str, text: str) -> None:
        self.console.print(Text.assemble((label, "yellow"), " ", text), highlight=False)

    def rule(self, title: str) -> None:
        self.console.rule(Text(title))

    def block(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def table(self, table: Table) -> None:
        drawn = RichTable(title=escape(table.title), show_lines=table.lines)
        for name in table.columns:
            drawn.add_column(name, style="bold" if name in table.bold else None,
                             justify="right" if name in table.right else "left")
        for row in table.rows:
            drawn.add_row(*map(_markup, row))
        self.console.print(drawn)

    def result(self, text: str, tone: Tone) -> None:
        self.console.print(_markup((text, tone)))

    @contextmanager
    def status(self, text: str) -> Iterator[Status]:
        with self.console.status(text) as status:
            yield status

    @contextmanager
    def bars(self, transient: bool = False) -> Iterator[RichBars]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=transient) as progress:
            yield RichBars(progress)


def _markup(cell: Cell) -> str:
    """A cell as rich markup: its text escaped, in its tone's style."""
    if isinstance(cell, str):
        return escape(cell)
    text, tone = cell
    return f"[{TONE_STYLE[tone]}]{escape(text)}[/]"
