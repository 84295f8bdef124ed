"""Following the registry's erasure feed (``GET /v1/erasures?since=``): how a renderer fleet
learns that packs were erased, and forgets them.

A ``PackCache`` serves a pinned version from memory or disk without asking the registry
(packs are immutable), so it meets an erasure's 410 only when it asks again: for ``latest``
after ``latest_ttl_s``, or for a version it does not hold. To forget promptly, each renderer
polls the feed, e.g. once a minute, with any key of scope ``read``::

    since = None  # or the value kept from the last run
    while running:
        since = follow_erasures(cache, client, since)  # client: persona_core.client.RegistryClient
        time.sleep(60)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from persona_core.runtime.cache import ErasureNotice, PackCache

__all__ = ["OVERLAP_S", "ErasureEntry", "ErasureFeedSource", "ErasurePage", "follow_erasures"]

# Two erasures that run at the same time can finish (and be listed) out of order: each poll
# looks this far back again; purging twice is harmless.
OVERLAP_S = 60.0


class ErasureEntry(ErasureNotice, Protocol):
    @property
    def erased_at(self) -> datetime: ...


class ErasurePage(Protocol):
    @property
    def items(self) -> Sequence[ErasureEntry]: ...

    @property
    def next_since(self) -> datetime | None: ...


class ErasureFeedSource(Protocol):
    """What answers the poll: ``RegistryClient.erasures``."""

    def erasures(self, since: datetime | None = None, limit: int = 100) -> ErasurePage: ...


def follow_erasures(
    cache: PackCache, feed: ErasureFeedSource, since: datetime | None = None, *, overlap_s: float = OVERLAP_S
) -> datetime | None:
    """Purge from ``cache`` every pack the feed lists as erased after ``since`` (all pages) and
    return the ``since`` of the next poll: ``overlap_s`` before the newest erasure seen, never
    earlier than ``since``. From ``None`` it purges everything ever erased (cheap: a purge of
    what is not cached touches nothing)."""
    newest: datetime | None = None
    page_since = since
    while True:
        page = feed.erasures(since=page_since)
        cache.forget_erased(page.items)
        for item in page.items:
            newest = item.erased_at if newest is None else max(newest, item.erased_at)
        if page.next_since is None or page.next_since == page_since:
            break
        page_since = page.next_since
    if newest is None:
        return since
    following = newest - timedelta(seconds=overlap_s)
    return following if since is None or following > since else since
