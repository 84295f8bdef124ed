"""Version lifecycle helpers shared by intake, import and the pipeline."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from persona_core.errors import ImmutableVersionError, InvalidTransitionError
from persona_core.store.base import MetadataStore, VersionStatus

__all__ = ["fail_version_on_error"]

log = logging.getLogger(__name__)

# These say the stored status already is what it should be (published, blocked, failed):
# rewriting it to ``failed`` would only erase the real state and its reasons.
_STATE_IS_RIGHT = (ImmutableVersionError, InvalidTransitionError)


@contextmanager
def fail_version_on_error(meta: MetadataStore, persona_id: str, version: int, step: str) -> Iterator[None]:
    """On any exception inside the block, mark the version ``failed`` with the reason
    ``"<step>: <ErrorType>: <message>"`` and re-raise the original exception.

    Marking is best effort: when it fails too (typically because the database is the thing
    that is down), that second failure is logged and noted on the original exception, which
    is the one that propagates. ImmutableVersionError and InvalidTransitionError leave the
    stored status alone.
    """
    try:
        yield
    except _STATE_IS_RIGHT:
        raise
    except Exception as exc:
        try:
            meta.set_status(persona_id, version, VersionStatus.FAILED,
                            reasons=[f"{step}: {type(exc).__name__}: {exc}"])
        except Exception as secondary:  # must never replace the original error
            log.exception("could not mark %s v%s failed after %s", persona_id, version, step)
            exc.add_note(f"(the version could not be marked failed: {type(secondary).__name__}: {secondary})")
        raise
