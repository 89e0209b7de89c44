"""The CLI's `Reporter`: lines, notes and tables on a rich console, progress as rich bars."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text


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

    @contextmanager
    def bars(self, transient: bool = False) -> Iterator[RichBars]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=transient) as progress:
            yield RichBars(progress)
