"""Progress display on stderr, so ``--json`` output on stdout stays parseable."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)


@contextmanager
def spinner(description: str, *, enabled: bool = True) -> Iterator[None]:
    """An indeterminate progress line for one long step."""
    if not enabled:
        yield
        return
    with _progress(bar=False) as progress:
        progress.add_task(description, total=None)
        yield


def _progress(bar: bool) -> Progress:
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if bar:
        columns += [BarColumn(), TaskProgressColumn()]
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=Console(file=sys.stderr), transient=True)


@contextmanager
def steps(total: int, *, enabled: bool = True) -> Iterator[Progress | None]:
    """A bar over ``total`` named steps; advance with ``progress.update(task, ...)``."""
    if not enabled:
        yield None
        return
    with _progress(bar=True) as progress:
        yield progress
