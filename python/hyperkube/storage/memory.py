"""In-memory Store: the reference semantics of the protocol, for tests and ``memory://``.

Everything lives in Python structures owned by the event loop, so every operation is atomic
without locks (no ``await`` inside a mutation):

- ``_versions[key]``: the key's versions, oldest first, as ``(mod_revision, create_revision,
  value | None)`` (``None`` is a deletion tombstone); ``_keys`` is the sorted list of keys that
  have versions, so a prefix is a contiguous range found with ``bisect``.
- ``_log``: every event since the compacted revision, in revision order (watch replay).
- Compaction to ``C`` keeps, per key, the newest version at or below ``C`` (unless it is a
  tombstone) and everything above; reads at revisions ``< C`` and watches from ``< C`` raise
  :class:`Compacted`.

Watchers are fed through :mod:`hyperkube.storage._watch` (bounded buffers, overflow ends them).
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator
from typing import Any

from ._watch import DEFAULT_WATCH_QUEUE, Fanout, Watcher
from .interface import (
    AlreadyExists,
    Compacted,
    Conflict,
    Event,
    EventType,
    FutureRevision,
    KeyValue,
    ListResult,
    NotFound,
    StorageError,
)

_Version = tuple[int, int, bytes | None]  # (mod_revision, create_revision, value or None if deleted)


class MemoryStore:
    """A revisioned key-value store held in memory (nothing survives the process)."""

    def __init__(self, *, watch_queue: int = DEFAULT_WATCH_QUEUE) -> None:
        self._rev = 0
        self._compacted = 0
        self._versions: dict[str, list[_Version]] = {}
        self._keys: list[str] = []
        self._log: list[Event] = []
        self._fanout = Fanout()
        self._watch_queue = watch_queue
        self._closed = False

    async def __aenter__(self) -> MemoryStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._fanout.close_all()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("store is closed")

    async def current_revision(self) -> int:
        return self._rev

    # -- reads ---------------------------------------------------------------------------------

    def _read_rev(self, revision: int | None) -> int:
        if not revision:
            return self._rev
        if revision < self._compacted:
            raise Compacted(revision, self._compacted)
        if revision > self._rev:
            raise FutureRevision(revision, self._rev)
        return revision

    @staticmethod
    def _at(versions: list[_Version], rev: int) -> _Version | None:
        # newest version with mod_revision <= rev
        i = bisect.bisect_right(versions, rev, key=lambda v: v[0])
        if i == 0:
            return None
        v = versions[i - 1]
        return v if v[2] is not None else None

    async def get(self, key: str, revision: int | None = None) -> KeyValue:
        self._check_open()
        rev = self._read_rev(revision)
        versions = self._versions.get(key)
        v = self._at(versions, rev) if versions else None
        if v is None:
            raise NotFound(key)
        assert v[2] is not None
        return KeyValue(key, v[2], v[1], v[0])

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 0,
        continue_key: str | None = None,
        revision: int | None = None,
    ) -> ListResult:
        self._check_open()
        rev = self._read_rev(revision)
        keys = self._keys
        i = bisect.bisect_right(keys, continue_key) if continue_key is not None else 0
        i = max(i, bisect.bisect_left(keys, prefix))
        items: list[KeyValue] = []
        more = 0
        for j in range(i, len(keys)):
            k = keys[j]
            if not k.startswith(prefix):
                break
            v = self._at(self._versions[k], rev)
            if v is None:
                continue
            if limit and len(items) >= limit:
                more += 1
                continue
            assert v[2] is not None
            items.append(KeyValue(k, v[2], v[1], v[0]))
        return ListResult(items, rev, items[-1].key if more else None, more)

    async def count(self, prefix: str) -> int:
        self._check_open()
        i = bisect.bisect_left(self._keys, prefix)
        n = 0
        for k in self._keys[i:]:
            if not k.startswith(prefix):
                break
            if self._versions[k][-1][2] is not None:
                n += 1
        return n

    # -- writes --------------------------------------------------------------------------------

    def _latest(self, key: str) -> _Version | None:
        versions = self._versions.get(key)
        if not versions or versions[-1][2] is None:
            return None
        return versions[-1]

    def _append(self, key: str, version: _Version, event: Event) -> None:
        versions = self._versions.get(key)
        if versions is None:
            self._versions[key] = [version]
            bisect.insort(self._keys, key)
        else:
            versions.append(version)
        self._log.append(event)
        self._fanout.publish([event])

    async def create(self, key: str, value: bytes) -> KeyValue:
        self._check_open()
        if self._latest(key) is not None:
            raise AlreadyExists(key)
        value = bytes(value)
        self._rev += 1
        rev = self._rev
        self._append(key, (rev, rev, value), Event(EventType.ADDED, key, rev, value, None, rev))
        return KeyValue(key, value, rev, rev)

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> KeyValue:
        self._check_open()
        cur = self._latest(key)
        if cur is None:
            raise NotFound(key)
        if expected_mod_revision is not None and expected_mod_revision != cur[0]:
            raise Conflict(key, expected_mod_revision, cur[0])
        value = bytes(value)
        self._rev += 1
        rev = self._rev
        self._append(key, (rev, cur[1], value), Event(EventType.MODIFIED, key, rev, value, cur[2], cur[1]))
        return KeyValue(key, value, cur[1], rev)

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        self._check_open()
        cur = self._latest(key)
        if cur is None:
            raise NotFound(key)
        if expected_mod_revision is not None and expected_mod_revision != cur[0]:
            raise Conflict(key, expected_mod_revision, cur[0])
        self._rev += 1
        rev = self._rev
        assert cur[2] is not None
        self._append(key, (rev, cur[1], None), Event(EventType.DELETED, key, rev, None, cur[2], cur[1]))
        return KeyValue(key, cur[2], cur[1], rev)

    # -- watch ---------------------------------------------------------------------------------

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        self._check_open()
        if from_revision < self._compacted:
            raise Compacted(from_revision, self._compacted)
        # Snapshot the replay and register for live events with no await in between: no gap,
        # no duplicate.
        start = bisect.bisect_right(self._log, from_revision, key=lambda e: e.revision)
        replay = [e for e in self._log[start:] if e.key.startswith(prefix)]
        w = Watcher(prefix, self._watch_queue)
        self._fanout.add(w)
        try:
            for e in replay:
                yield e
            while True:
                batch = await w.next_batch()
                if batch is None:
                    return
                for e in batch:
                    if e.revision > from_revision:  # a watch may start at a future revision
                        yield e
        finally:
            self._fanout.remove(w)

    async def compact(self, revision: int) -> None:
        self._check_open()
        if revision <= self._compacted:
            raise Compacted(revision, self._compacted)
        if revision > self._rev:
            raise FutureRevision(revision, self._rev)
        for key in list(self._versions):
            versions = self._versions[key]
            i = bisect.bisect_right(versions, revision, key=lambda v: v[0])
            if i == 0:
                continue
            keep_from = i - 1 if versions[i - 1][2] is not None else i
            if keep_from:
                del versions[:keep_from]
            if not versions:
                del self._versions[key]
        self._keys = sorted(self._versions)
        cut = bisect.bisect_right(self._log, revision, key=lambda e: e.revision)
        del self._log[:cut]
        self._compacted = revision
