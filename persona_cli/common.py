"""What every command shares: exit codes, settings and stores, output, error handling."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from persona_core.errors import (
    AlreadyExistsError,
    ErasedError,
    ImmutableVersionError,
    IntegrityError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PackValidationError,
    PersonaCoreError,
    SignatureError,
)
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.from_settings import open_blob_store, open_metadata_store


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_FOUND = 3
    INTEGRITY = 4
    BLOCKED = 5
    DRIFT = 6


# "\b" keeps click from re-wrapping the list into one paragraph.
EXIT_CODES_HELP = """\b
Exit codes:
  0  ok
  1  failure (build failed, store unavailable, unexpected error)
  2  usage or bad input
  3  not found (persona, version, published pack, API key) or erased (persona_erased, version_erased)
  4  integrity or verification failure (tampered archive or blob, hash mismatch)
  5  build blocked by a quality gate
  6  drift: a frame at or over the --fail-on level (drift --fail-on warn|fail)

Settings come from PERSONA_* environment variables (PERSONA_HOME, PERSONA_DATABASE_URL,
PERSONA_BLOB_URL, PERSONA_S3_*, PERSONA_SIGNING_SECRET, ...)."""

# Most specific first: the first class the error is an instance of decides.
_EXIT_FOR: tuple[tuple[type[PersonaCoreError], ExitCode], ...] = (
    (NotFoundError, ExitCode.NOT_FOUND),
    (ErasedError, ExitCode.NOT_FOUND),
    (IntegrityError, ExitCode.INTEGRITY),
    (PackValidationError, ExitCode.INTEGRITY),
    (SignatureError, ExitCode.INTEGRITY),
    (InvalidInputError, ExitCode.USAGE),
    (AlreadyExistsError, ExitCode.USAGE),
    (ImmutableVersionError, ExitCode.USAGE),
    (InvalidTransitionError, ExitCode.USAGE),
)


def exit_code_for(exc: PersonaCoreError) -> ExitCode:
    for cls, code in _EXIT_FOR:
        if isinstance(exc, cls):
            return code
    return ExitCode.FAILURE


@dataclass
class State:
    """Global options, kept on the click context for every command."""

    home: Path | None = None
    json: bool = False
    verbose: bool = False


JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


_state = State()


def set_state(new: State) -> None:
    """Called by the root callback on every invocation (global options)."""
    global _state  # noqa: PLW0603 - one CLI invocation per process (or per CliRunner call)
    _state = new


def state() -> State:
    return _state


def want_json(flag: bool = False) -> bool:
    return flag or state().json


def settings(cls: type[Settings] = Settings, **overrides: Any) -> Settings:
    """Settings from the environment, with ``--home`` applied."""
    home = state().home
    if home is not None:
        overrides.setdefault("home", home)
    try:
        s = cls(**overrides)
    except ValueError as exc:  # pydantic's ValidationError: a bad PERSONA_* value
        raise InvalidInputError(f"invalid settings: {exc}") from None
    if s.database_url is None or s.blob_url is None:
        # The embedded default keeps SQLite and the blob folder under home.
        s.home.mkdir(parents=True, exist_ok=True)
    return s


# Stores opened by open_stores during the running command; handle_errors closes them.
_opened: list[MetadataStore | BlobStore] = []


def open_stores(s: Settings) -> tuple[MetadataStore, BlobStore]:
    """The configured stores, closed when the command (wrapped by handle_errors) ends."""
    meta, blobs = open_metadata_store(s), open_blob_store(s)
    _opened.extend((meta, blobs))
    return meta, blobs


@contextmanager
def metadata_store(s: Settings) -> Iterator[MetadataStore]:
    """The configured metadata store, closed on leaving the block."""
    meta = open_metadata_store(s)
    try:
        yield meta
    finally:
        meta.close()


def _close_opened(since: int) -> None:
    # The CLI can run many commands in one process (test runners, scripts calling main()):
    # each releases its pooled database connections when it ends.
    while len(_opened) > since:
        _opened.pop().close()


def out() -> Console:
    # Created per call so test runners that swap sys.stdout see the output. Piped output
    # gets a wide fixed width so tables stay whole for grep and logs.
    width = None if sys.stdout.isatty() else 200
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


def err() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def fail(code: ExitCode, error_code: str, message: str, json_out: bool = False) -> NoReturn:
    """Print a one-line error (or a JSON error document) and exit with ``code``."""
    if want_json(json_out):
        emit_json({"error": {"code": error_code, "message": message, "exit_code": int(code)}})
    else:
        err().print(f"[red]error[/red] \\[{error_code}]: {_escape(message)}", markup=True, highlight=False)
    raise typer.Exit(int(code))


P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn persona-core errors into a one-line message and a documented exit code; close the
    stores the command opened with :func:`open_stores`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        json_out = bool(kwargs.get("json_out", False))
        opened_before = len(_opened)
        try:
            return fn(*args, **kwargs)
        except PersonaCoreError as exc:
            fail(exit_code_for(exc), exc.code, str(exc), json_out)
        except ImportError as exc:
            fail(ExitCode.FAILURE, "missing_dependency", f"{exc} (install the pipeline/api extras)", json_out)
        finally:
            _close_opened(opened_before)

    return wrapper


def _escape(text: str) -> str:
    # Rich markup would eat "[...]" in messages (ref lists, file names).
    return text.replace("[", r"\[")
