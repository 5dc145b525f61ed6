"""Progress bars with ETA (rich), on stderr so that stdout stays clean for piping.

Where stderr is not a terminal (nohup, a batch scheduler, a CI log) a live bar draws
nothing, so each bar prints a plain line instead at most every ``plain_every`` seconds.
"""

from __future__ import annotations

import time

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

    def __init__(self, progress: Progress, task_id: TaskID, plain_every: float | None = None):
        self._progress, self._id = progress, task_id
        self._plain_every, self._last_line = plain_every, time.monotonic()

    def advance(self, n: float = 1.0) -> None:
        self._progress.advance(self._id, n)
        if self._plain_every is not None and time.monotonic() - self._last_line >= self._plain_every:
            self._last_line = time.monotonic()
            task = self._progress.tasks[self._id]
            eta = _minutes(_remaining(task)) if task.completed else "?"
            self._progress.console.print(
                f"{task.description}: {task.completed:.0f}/{task.total:.0f} ({task.percentage:.0f}%), "
                f"elapsed {_minutes(task.elapsed or 0.0)}, eta {eta}", highlight=False, soft_wrap=True)

    def finish(self) -> None:
        self._progress.update(self._id, completed=self._progress.tasks[self._id].total, visible=False)


class ProgressBoard:
    """Several bars in one live display (a reproduce bar over runs, one bar per run)."""

    def __init__(self, enabled: bool = True, plain_every: float = 60.0):
        self._plain_every = plain_every if enabled and not console.is_terminal else None
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
            speed_estimate_period=600.0,   # rounds of a minute or more still get an eta in the live bar
        )
        self._started = False

    def __enter__(self) -> ProgressBoard:
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            self._progress.stop()

    def task(self, description: str, total: float) -> ProgressTask:
        if not self._started:   # the display starts with the first bar: an input error before it prints one line
            self._progress.start()
            self._started = True
        return ProgressTask(self._progress, self._progress.add_task(description, total=total), self._plain_every)

    def log(self, message: str) -> None:
        self._progress.console.print(message, highlight=False, soft_wrap=True)


def _remaining(task) -> float:
    """rich's estimate (a recent window), or, for steps slower than the window, the average since the start."""
    if task.time_remaining is not None:
        return task.time_remaining
    return (task.elapsed or 0.0) * (task.total - task.completed) / task.completed


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
