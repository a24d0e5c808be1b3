"""The storage contract every backend implements (SQLite, etcd, and the in-memory one for tests).

Modelled on etcd v3 as the Kubernetes API server uses it:

- Keys are strings under ``/registry`` (``/registry/pods/default/web-0``); values are bytes
  (msgpack-encoded objects, encoded by the caller).
- Every write gets the next global *revision*; the API server exposes it as
  ``metadata.resourceVersion``. Each key has ``create_revision`` and ``mod_revision``.
- ``update`` and ``delete`` are compare-and-swap on ``mod_revision`` when ``expected_mod_revision``
  is given: a mismatch raises :class:`Conflict` (the API server answers 409).
- ``watch(prefix, from_revision)`` yields events with revision > ``from_revision`` in revision
  order, with no gaps or duplicates, each with the previous value; a revision older than the
  compacted one raises :class:`Compacted` (the API server answers 410 Gone). A watcher that cannot
  keep up is ended with :class:`WatchOverflow` (never silently dropped); it re-lists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """Base class of every storage error."""


class NotFound(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class AlreadyExists(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class Conflict(StorageError):
    """Compare-and-swap failed: the key's mod_revision is not the expected one."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"conflict on {key}: expected mod revision {expected}, found {actual}")
        self.key, self.expected, self.actual = key, expected, actual


class Compacted(StorageError):
    """The requested revision has been compacted away (API: 410 Gone)."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"required revision {requested} has been compacted (oldest available: {compacted + 1})"
        )
        self.requested, self.compacted = requested, compacted


class FutureRevision(StorageError):
    """The requested revision is newer than the store's current revision."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"required revision {requested} is a future revision (current: {current})")
        self.requested, self.current = requested, current


class WatchOverflow(StorageError):
    """The watcher fell too far behind and was ended; the client must re-list."""


class Corrupt(StorageError):
    """The store's files are damaged; refuse to serve rather than return wrong data."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    key: str
    revision: int
    # the new value (for DELETED: None)
    value: bytes | None
    # the previous value (None for ADDED)
    prev_value: bytes | None
    create_revision: int = 0


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    # the revision the list was served at (use it as resourceVersion and for the next page)
    revision: int
    # the key to continue from (exclusive), or None when this is the last page
    continue_key: str | None
    # how many keys remain after this page (etcd's count - len(items)), when known
    remaining: int | None = None


@runtime_checkable
class Store(Protocol):
    """Async revisioned key-value store with watch. All methods are coroutines."""

    async def start(self) -> None:
        """Open files / connections; verify integrity (raise Corrupt)."""

    async def close(self) -> None:
        """Flush and close; ends every watch."""

    async def current_revision(self) -> int: ...

    async def get(self, key: str, revision: int | None = None) -> KeyValue:
        """The value at `revision` (default: latest). Raises NotFound, Compacted."""
        ...

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 0,
        continue_key: str | None = None,
        revision: int | None = None,
    ) -> ListResult:
        """Keys with `prefix`, in key order, after `continue_key` (exclusive), at `revision`
        (default: latest). `limit` 0 means all. Raises Compacted, FutureRevision."""
        ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Raises AlreadyExists. Returns the stored KeyValue (its mod_revision is the new revision)."""
        ...

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> KeyValue:
        """Raises NotFound, Conflict."""
        ...

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        """Returns the deleted KeyValue with mod_revision = the deletion's revision.
        Raises NotFound, Conflict."""
        ...

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events for keys under `prefix` with revision > from_revision, in order.
        Raises Compacted (at start), WatchOverflow (when too slow)."""
        ...

    async def compact(self, revision: int) -> None:
        """Drop history at and below `revision` (latest values are kept)."""
        ...
