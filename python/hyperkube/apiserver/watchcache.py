"""The watch cache: one store watch per resource, fanned out to every HTTP watcher.

For each resource the first watch request starts a :class:`WatchCache`, which opens a single
``store.watch(prefix, rev)`` and keeps a window of the most recent events (decoded once). A
watcher that asks for a resourceVersion inside the window is replayed from it and then follows
live events; an older one is served by a store watch of its own (which answers 410 Gone when the
revision is compacted). Each event is matched against all watchers at once (:mod:`.fanout`) and
appended to each receiving watcher's buffer; the watcher's HTTP writer encodes it (each event is
encoded once per output format, cached on the event) and flushes in batches. A watcher whose
buffer overflows is closed and re-watches, as upstream's terminated-watcher behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from hyperkube.api import fields as _fields
from hyperkube.api.registry import Resource
from hyperkube.apiserver.fanout import PyFanout
from hyperkube.storage.interface import Compacted, Event, Store

log = logging.getLogger("hyperkube.apiserver.watch")

MAX_BUFFER = 100_000
_ids = itertools.count(1)


class CacheEvent:
    __slots__ = (
        "type",
        "revision",
        "obj",
        "prev",
        "ns",
        "labels",
        "fields",
        "prev_labels",
        "prev_fields",
        "encoded",
    )

    def __init__(
        self,
        etype: str,
        revision: int,
        obj: dict[str, Any],
        prev: dict[str, Any] | None,
        plural: str,
        need_fields: bool,
    ) -> None:
        self.type = etype
        self.revision = revision
        self.obj = obj
        self.prev = prev
        md = obj.get("metadata") or {}
        self.ns = md.get("namespace") or ""
        self.labels = md.get("labels")
        self.fields = _fields.field_set(plural, obj) if need_fields else None
        if prev is not None:
            self.prev_labels = (prev.get("metadata") or {}).get("labels") or {}
            self.prev_fields = _fields.field_set(plural, prev) if need_fields else None
        else:
            self.prev_labels = None
            self.prev_fields = None
        self.encoded: dict[Any, bytes] = {}


class Watcher:
    """One client watch: a buffer of (event type, CacheEvent) the HTTP writer drains."""

    def __init__(self, namespace: str, label_selector: str, field_selector: str) -> None:
        self.id = next(_ids)
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.buf: list[tuple[str, CacheEvent]] = []
        self.wake = asyncio.Event()
        self.closed = False
        self.error: Exception | None = None

    def deliver(self, etype: str, ev: CacheEvent) -> None:
        if self.closed:
            return
        self.buf.append((etype, ev))
        if len(self.buf) > MAX_BUFFER:
            self.close(None)
        self.wake.set()

    def close(self, error: Exception | None) -> None:
        self.closed = True
        self.error = error
        self.wake.set()

    def drain(self) -> list[tuple[str, CacheEvent]]:
        out, self.buf = self.buf, []
        self.wake.clear()
        return out


def _decode_event(
    ev: Event, decode: Callable[[bytes, int], dict[str, Any]], plural: str, need_fields: bool
) -> CacheEvent:
    if ev.type == "DELETED":
        assert ev.prev_value is not None
        obj = decode(ev.prev_value, ev.revision)
        return CacheEvent("DELETED", ev.revision, obj, None, plural, need_fields)
    obj = decode(ev.value or b"", ev.revision)
    prev = decode(ev.prev_value, ev.revision) if ev.prev_value is not None else None
    return CacheEvent(str(ev.type), ev.revision, obj, prev, plural, need_fields)


class WatchCache:
    def __init__(
        self,
        store: Store,
        res: Resource,
        decode: Callable[[bytes, int], dict[str, Any]],
        window: int = 10_000,
        fanout_factory: Callable[[], Any] = PyFanout,
    ) -> None:
        self.store, self.res, self.decode = store, res, decode
        self.window: deque[CacheEvent] = deque(maxlen=window)
        self.start_rev = 0
        self.dropped_rev = 0
        self.rev = 0
        self.fanout = fanout_factory()
        self.watchers: dict[int, Watcher] = {}
        self.task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.need_fields = False
        self.events_total = 0

    async def ensure_started(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run())
        await self._started.wait()

    def covered_from(self) -> int:
        """The oldest revision R such that every event after R is in the window."""
        return max(self.start_rev, self.dropped_rev)

    async def _run(self) -> None:
        while True:
            try:
                self.start_rev = self.rev = await self.store.current_revision()
                self.window.clear()
                self.dropped_rev = 0
                self._started.set()
                async for ev in self.store.watch(self.res.prefix(), self.start_rev):
                    self._dispatch(_decode_event(ev, self.decode, self.res.plural, self.need_fields))
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # store watch ended (overflow, compaction, restart): watchers re-watch
                log.warning("watch cache for %s restarting: %s", self.res.plural, e)
                for w in list(self.watchers.values()):
                    w.close(None)
                await asyncio.sleep(0.2)

    def _dispatch(self, ev: CacheEvent) -> None:
        if len(self.window) == self.window.maxlen:
            self.dropped_rev = self.window[0].revision
        self.window.append(ev)
        self.rev = ev.revision
        self.events_total += 1
        if not self.watchers:
            return
        for etype, targets in self.fanout.dispatch(
            ev.type, ev.ns, ev.labels, ev.fields, ev.prev_labels, ev.prev_fields
        ):
            for w in targets:
                w.deliver(etype, ev)

    def subscribe(self, w: Watcher, from_rev: int) -> bool:
        """Attach a watcher that has seen everything up to from_rev. False if the window does not
        reach back that far (the caller then serves it from the store)."""
        if w.field_selector:
            self.need_fields = True
        if from_rev < self.covered_from():
            return False
        self.watchers[w.id] = w
        self.fanout.add(w.id, w, w.namespace, w.label_selector, w.field_selector)
        if self.window and self.window[-1].revision > from_rev:
            single = PyFanout()
            single.add(w.id, w, w.namespace, w.label_selector, w.field_selector)
            for ev in self.window:
                if ev.revision <= from_rev:
                    continue
                if w.field_selector and ev.fields is None:
                    ev.fields = _fields.field_set(self.res.plural, ev.obj)
                    if ev.prev is not None:
                        ev.prev_fields = _fields.field_set(self.res.plural, ev.prev)
                for etype, _ in single.dispatch(
                    ev.type, ev.ns, ev.labels, ev.fields, ev.prev_labels, ev.prev_fields
                ):
                    w.deliver(etype, ev)
        return True

    def unsubscribe(self, w: Watcher) -> None:
        if self.watchers.pop(w.id, None) is not None:
            self.fanout.remove(w.id)

    async def stop(self) -> None:
        for w in list(self.watchers.values()):
            w.close(None)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def direct_watch(
    store: Store,
    res: Resource,
    decode: Callable[[bytes, int], dict[str, Any]],
    w: Watcher,
    from_rev: int,
    prefix: str,
) -> None:
    """Serve one watcher from a store watch of its own (a revision older than the cache window)."""
    single = PyFanout()
    single.add(w.id, w, w.namespace, w.label_selector, w.field_selector)
    need = bool(w.field_selector)
    try:
        async for ev in store.watch(prefix, from_rev):
            if w.closed:
                return
            ce = _decode_event(ev, decode, res.plural, need)
            for etype, _ in single.dispatch(
                ce.type, ce.ns, ce.labels, ce.fields, ce.prev_labels, ce.prev_fields
            ):
                w.deliver(etype, ce)
    except Compacted as e:
        w.close(e)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        w.close(e)
