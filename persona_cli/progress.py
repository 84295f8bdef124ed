"""Progress display on stderr, so ``--json`` output on stdout stays parseable."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# The builder's progress lines: one per step, one before and after a model load
# (persona_pipeline.defs.assets logs them; named here so the CLI loads no pipeline to listen).
BUILD_PROGRESS_LOGGER = "persona_pipeline.build"


@contextmanager
def spinner(description: str, *, enabled: bool = True) -> Iterator[None]:
    """An indeterminate progress line for one long step."""
    if not enabled:
        yield
        return
    with _progress() as progress:
        progress.add_task(description, total=None)
        yield


def _progress(console: Console | None = None) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console or Console(file=sys.stderr), transient=True)


class _Lines(logging.Handler):
    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        self.say(record.getMessage())


@contextmanager
def steps(console: Console | None = None, *, live: bool | None = None) -> Iterator[Callable[[str], None]]:
    """Per-step progress of a build in this process on stderr, each line with the seconds since
    the start: the builder's lines (``BUILD_PROGRESS_LOGGER``) and what the command says with
    the callable this yields. On a terminal a spinner under the lines shows the newest one and
    the time since it (a model load that takes a while is seen to be alive); anywhere else each
    line is printed as it comes, one per step, so a pipe or a log file follows the build."""
    console = console or Console(file=sys.stderr, highlight=False, soft_wrap=True)
    live = console.is_terminal if live is None else live
    started = time.perf_counter()
    progress = _progress(console) if live else None
    task = progress.add_task("starting", total=None) if progress else None

    def say(message: str) -> None:
        line = f"{time.perf_counter() - started:6.1f}s {message}"
        if progress is None or task is None:
            console.print(line, markup=False, highlight=False)
            return
        progress.console.print(line, markup=False, highlight=False)
        progress.reset(task, description=message)

    log = logging.getLogger(BUILD_PROGRESS_LOGGER)
    handler = _Lines(say)
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # the lines are printed here; --verbose's root handler would repeat them
    try:
        if progress is None:
            yield say
        else:
            with progress:
                yield say
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate
