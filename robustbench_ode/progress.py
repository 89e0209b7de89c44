"""How library code (training, attack grids, audits, experiments) tells someone how it is going,
without knowing who listens: the one interface all of it reports through. The CLI draws it with
rich (`cli.rich_reporter.RichReporter`), the Python API logs it (`LoggingReporter`), tests may pass
`SILENT`. Nothing here imports rich."""
from __future__ import annotations

import logging
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Iterator, Literal, Protocol

Tone = Literal["good", "caution", "bad", "muted"]
"""How a verdict reads: pass, warn, fail, or does not apply."""
Cell = str | tuple[str, Tone]
"""A table cell: its text, or its text and a tone to show it in."""


@dataclass(frozen=True)
class Table:
    """A titled table of text cells; `bold` and `right` name columns shown bold or aligned right,
    `lines` draws a rule between rows."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]] = field(default_factory=list)
    bold: tuple[str, ...] = ()
    right: tuple[str, ...] = ()
    lines: bool = False


def cell_text(cell: Cell) -> str:
    """A cell's text, without its tone."""
    return cell if isinstance(cell, str) else cell[0]


class Bars(Protocol):
    """Progress bars shown one at a time: `start` begins a new one and retires the previous one."""

    def start(self, label: str, total: int | None = None) -> None: ...

    def update(self, completed: int, total: int | None = None, *, label: str | None = None,
               status: str | None = None) -> None:
        """Move the current bar; `label` replaces its label, `status` the text beside it."""


class Status(Protocol):
    """A one-line "working on ..." indicator."""

    def update(self, text: str, /) -> None: ...


class Reporter(Protocol):
    """Where work reports: plain lines, labelled notes, section rules, verbatim blocks, tables,
    verdicts, a status line and progress bars."""

    def line(self, text: str) -> None: ...

    def note(self, label: str, text: str) -> None:
        """A remark with a highlighted `label` ("warning:", "preset") in front."""

    def rule(self, title: str) -> None: ...

    def block(self, text: str) -> None:
        """A block printed as it is (a Markdown table)."""

    def table(self, table: Table) -> None: ...

    def result(self, text: str, tone: Tone) -> None:
        """A verdict line, shown in its tone."""

    def status(self, text: str) -> AbstractContextManager[Status]:
        """A status line for the duration of the context, `text` until updated."""

    def bars(self, transient: bool = False) -> AbstractContextManager[Bars]:
        """Progress bars for the duration of the context; `transient` ones vanish when it ends."""


class _SilentBars:
    def start(self, label: str, total: int | None = None) -> None:
        pass

    def update(self, completed: int, total: int | None = None, *, label: str | None = None,
               status: str | None = None) -> None:
        pass


class _SilentStatus:
    def update(self, text: str, /) -> None:
        pass


SILENT_BARS = _SilentBars()


class SilentReporter:
    """A `Reporter` that shows nothing."""

    def line(self, text: str) -> None:
        pass

    def note(self, label: str, text: str) -> None:
        pass

    def rule(self, title: str) -> None:
        pass

    def block(self, text: str) -> None:
        pass

    def table(self, table: Table) -> None:
        pass

    def result(self, text: str, tone: Tone) -> None:
        pass

    def status(self, text: str) -> AbstractContextManager[Status]:
        return nullcontext(_SilentStatus())

    def bars(self, transient: bool = False) -> AbstractContextManager[Bars]:
        return nullcontext(SILENT_BARS)


SILENT = SilentReporter()


class _LoggedBars:
    """Logs the start of each bar (its label); moves are too many to log."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def start(self, label: str, total: int | None = None) -> None:
        self.logger.info("%s", label)

    def update(self, completed: int, total: int | None = None, *, label: str | None = None,
               status: str | None = None) -> None:
        pass


class _LoggedStatus:
    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def update(self, text: str, /) -> None:
        self.logger.debug("%s", text)


class LoggingReporter:
    """A `Reporter` for library use (the Python API): everything at INFO on `logger`, notes
    labelled "warning:" at WARNING, status updates at DEBUG; silent unless logging is configured
    for INFO (warnings reach stderr through logging's last-resort handler)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("robustbench_ode")

    def line(self, text: str) -> None:
        self.logger.info("%s", text)

    def note(self, label: str, text: str) -> None:
        level = logging.WARNING if label.startswith("warning") else logging.INFO
        self.logger.log(level, "%s %s", label, text)

    def rule(self, title: str) -> None:
        self.logger.info("--- %s ---", title)

    def block(self, text: str) -> None:
        self.logger.info("%s", text)

    def table(self, table: Table) -> None:
        rows = ["; ".join(f"{name} {cell_text(cell)}" for name, cell in zip(table.columns, row)) for row in table.rows]
        self.logger.info("%s", "\n".join([table.title, *rows]))

    def result(self, text: str, tone: Tone) -> None:
        self.logger.info("%s", text)

    @contextmanager
    def status(self, text: str) -> Iterator[Status]:
        self.logger.debug("%s", text)
        yield _LoggedStatus(self.logger)

    @contextmanager
    def bars(self, transient: bool = False) -> Iterator[Bars]:
        yield _LoggedBars(self.logger)
