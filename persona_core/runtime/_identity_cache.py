"""A cache keyed by object identity, for values derived from frozen pydantic objects.

Frozen pydantic models hash their fields (and fail on dict fields), so they cannot key a
dict cheaply. This keys by ``id()`` and holds a weak reference to check the id still means
the same object; the entry is dropped when the object dies.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityCache(Generic[K, V]):
    def __init__(self, build: Callable[[K], V]) -> None:
        self._build = build
        self._entries: dict[int, tuple[weakref.ref[K], V]] = {}

    def get(self, obj: K) -> V:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        value = self._build(obj)
        key = id(obj)
        entries = self._entries

        # No lock: the callback may run inside any allocation (GC), even one made while a
        # lock is held. A racing insert can at worst be dropped, which costs a rebuild.
        def drop(ref: weakref.ref[K]) -> None:
            current = entries.get(key)
            if current is not None and current[0] is ref:
                entries.pop(key, None)

        entries[key] = (weakref.ref(obj, drop), value)
        return value
