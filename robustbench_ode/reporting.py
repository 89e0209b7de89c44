"""How long-running work (training, attack grids, experiments) tells someone how it is going,
without knowing who listens: the CLI draws it with rich (`cli_reporter.RichReporter`), the Python
API and tests may pass `SILENT`."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class Bars(Protocol):
    """Progress bars shown one at a time: `start` begins a new one and retires the previous one."""

    def start(self, label: str, total: int | None = None) -> None: ...

    def update(self, completed: int, total: int | None = None, *, label: str | None = None,
               status: str | None = None) -> None:
        """Move the current bar; `label` replaces its label, `status` the text beside it."""


class Reporter(Protocol):
    """Where work reports: plain lines, labelled notes, section rules, verbatim blocks and bars."""

    def line(self, text: str) -> None: ...

    def note(self, label: str, text: str) -> None:
        """A remark with a highlighted `label` ("warning:", "preset") in front."""

    def rule(self, title: str) -> None: ...

    def block(self, text: str) -> None:
        """A block printed as it is (a Markdown table)."""

    def bars(self, transient: bool = False) -> AbstractContextManager[Bars]:
        """Progress bars for the duration of the context; `transient` ones vanish when it ends."""


class _SilentBars:
    def start(self, label: str, total: int | None = None) -> None:
        pass

    def update(self, completed: int, total: int | None = None, *, label: str | None = None,
               status: str | None = None) -> None:
        pass


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

    def bars(self, transient: bool = False) -> AbstractContextManager[Bars]:
        return nullcontext(_SilentBars())


SILENT = SilentReporter()
