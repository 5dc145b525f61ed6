"""Progress bars with ETA (rich), on stderr so that stdout stays clean for piping."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class ProgressTask:
    """A handle on one bar: ``advance(n)``; safe to use when bars are disabled."""

    def __init__(self, progress: Progress, task_id: TaskID):
        self._progress, self._id = progress, task_id

    def advance(self, n: float = 1.0) -> None:
        self._progress.advance(self._id, n)

    def finish(self) -> None:
        self._progress.update(self._id, completed=self._progress.tasks[self._id].total, visible=False)


class ProgressBoard:
    """Several bars in one live display (a reproduce bar over runs, one bar per run)."""

    def __init__(self, enabled: bool = True):
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )

    def __enter__(self) -> ProgressBoard:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def task(self, description: str, total: float) -> ProgressTask:
        return ProgressTask(self._progress, self._progress.add_task(description, total=total))

    def log(self, message: str) -> None:
        self._progress.console.print(message, highlight=False, soft_wrap=True)
