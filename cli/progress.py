"""A progress bar with ETA on stderr, for long commands (rich, which Typer already uses)."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Bar:
    def __init__(self, progress: Progress, label: str):
        self._progress = progress
        self._label = label
        self._task = None

    def start(self, total: int, note: str = "") -> None:
        if self._task is None:  # shown from the first start: a command that fails before prints only its error
            self._progress.start()
        self._task = self._progress.add_task(self._label, total=total, note=note)

    def stop(self) -> None:
        if self._task is not None:  # rich prints an empty line when stopping a bar never shown
            self._progress.stop()

    def advance(self, note: str = "") -> None:
        if self._task is not None:  # work that never started a bar (e.g. frgb fit --no-cv) shows none
            self._progress.update(self._task, advance=1, note=note)


@contextmanager
def progress_bar(label: str):
    """Yield a `Bar`; call `start(total)` once the amount of work is known, then `advance()`."""
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
        console=Console(stderr=True), transient=False,
    )
    bar = Bar(progress, label)
    try:
        yield bar
    finally:
        bar.stop()


def fold_progress(bar: Bar, repeats: int = 1):
    """An on_fold(i, n, note) callback for the library's fold loops: the first call starts `bar` at
    n * repeats steps (a loop run `repeats` times), every later call advances it by one."""
    started = False

    def on_fold(i: int, n: int, note: str) -> None:
        nonlocal started
        if not started:
            bar.start(n * repeats)
            started = True
        else:
            bar.advance(note)

    return on_fold
