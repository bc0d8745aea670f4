"""Progress displays for long work (downloads, extraction, engine builds, training)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class ProgressHook(Protocol):
    """Called with units done so far and the total (0 when the total is unknown)."""

    def __call__(self, done: int, total: int) -> None: ...


ProgressBar = Callable[[str], AbstractContextManager[ProgressHook]]
"""Opens a display for one piece of work, given its description (e.g. ``byte_progress``)."""


@contextmanager
def byte_progress(description: str, console: Console) -> Iterator[ProgressHook]:
    """A bar with size, speed and ETA, for copying or downloading bytes."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update


@contextmanager
def step_progress(description: str, console: Console) -> Iterator[ProgressHook]:
    """A percent bar with elapsed time, for builds that report steps; in a log (no
    terminal, where a bar would only show at the end) a line every 10%."""
    if not console.is_terminal:
        yield plain_percent_lines(description, console)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=100)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or 100)

        yield update


def plain_percent_lines(description: str, console: Console) -> ProgressHook:
    shown = -10

    def update(done: int, total: int) -> None:
        nonlocal shown
        percent = done * 100 // (total or 100)
        if percent >= shown + 10:
            shown = percent - percent % 10
            console.print(f"{description}: {percent}%")

    return update


def report_console() -> Console:
    """Standard output for result tables: the terminal's width, or 160 columns when piped
    to a file or a log, where rich would otherwise squeeze a wide table into 80."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


@contextmanager
def loss_progress(
    description: str, console: Console
) -> Iterator[Callable[[int, int, float], None]]:
    """Training steps with the last loss, elapsed time and ETA; in a log, a line every 10%."""
    if not console.is_terminal:
        yield plain_loss_lines(description, console)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps, loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=None, loss=float("nan"))

        def update(done: int, total: int, loss: float) -> None:
            progress.update(task, completed=done, total=total, loss=loss)

        yield update


def plain_loss_lines(description: str, console: Console) -> Callable[[int, int, float], None]:
    """For a log: a line every 10% of the steps with the loss and the time left, estimated
    from the steps of this run so far."""
    began = time.monotonic()
    first: int | None = None
    shown = -10

    def update(done: int, total: int, loss: float) -> None:
        nonlocal first, shown
        first = done - 1 if first is None else first  # a resumed run starts past 0
        percent = done * 100 // max(total, 1)
        if percent < shown + 10:
            return
        shown = percent - percent % 10
        per_step = (time.monotonic() - began) / max(done - first, 1)
        console.print(
            f"{description}: step {done}/{total}, loss {loss:.3f}, "
            f"{per_step:.1f} s/step, about {per_step * (total - done) / 60:.0f} min left"
        )

    return update
