"""Progress bars for byte transfers (``rich.progress``), on stderr.

Shown only when stderr is a terminal and ``--quiet`` is not given; otherwise every call is a
no-op. Safe to update from worker threads. Code that moves bytes receives a ``Task`` and calls
``advance(n)``; after a retry it calls ``reset_to(offset)`` so the bar never overcounts.
"""

from __future__ import annotations

import sys


class Task:
    """One bar. ``progress`` None: a transfer nobody watches (every call is a no-op)."""

    def __init__(self, progress, task_id, total: int | None):
        self._progress = progress
        self._id = task_id
        self.total = total

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(self._id, advance=n)

    def reset_to(self, completed: int) -> None:
        if self._progress is not None:
            self._progress.update(self._id, completed=completed)

    def done(self) -> None:
        if self._progress is not None and self.total is not None:
            self._progress.update(self._id, completed=self.total)


class Transfers:
    """A context manager owning one ``rich.progress.Progress`` when bars are shown. With
    bars off, rich is not even imported (~30 ms of start-up a script does not need)."""

    def __init__(self, enabled: bool | None = None, *, quiet: bool = False):
        if enabled is None:
            enabled = not quiet and sys.stderr.isatty()
        self.enabled = enabled
        self.progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}", style="bold"),
                BarColumn(bar_width=None),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> Transfers:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def task(self, description: str, total: int | None) -> Task:
        if self.progress is None:
            return Task(None, None, total)
        label = description if len(description) <= 40 else "…" + description[-39:]
        return Task(self.progress, self.progress.add_task(label, total=total), total)


def silent() -> Transfers:
    return Transfers(enabled=False, quiet=True)
