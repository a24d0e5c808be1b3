"""The watch cache: one store watch per resource, fanned out to every HTTP watcher.

For each resource the first watch request starts a :class:`WatchCache`, which opens a single
``store.watch(prefix, rev)`` and keeps a window of the most recent events (decoded once). A
watcher that asks for a resourceVersion inside the window is replayed from it and then follows
live events; an older one is served by a store watch of its own (which answers 410 Gone when the
revision is compacted).

Events are dispatched in batches (whatever arrived while the previous batch was being sent).
Matching every event of a batch against every watcher's namespace, label and field selectors is
the compiled ``hyperkube._native.WatchFanout``: for JSON watchers it also frames the watch lines
(each event's object is encoded to JSON once) and returns one payload per watcher, which is
appended to the watcher's buffer; watchers that asked for Tables get (type, event) rows and
encode them per format (once per event, cached on the event). A watcher whose buffer overflows
is closed and re-watches, as upstream's terminated-watcher behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from hyperkube import _native
from hyperkube.api import fields as _fields
from hyperkube.api.registry import Resource
from hyperkube.api.serialization import to_json
from hyperkube.apiserver.fanout import PyFanout
from hyperkube.storage.interface import Compacted, Event, Store

log = logging.getLogger("hyperkube.apiserver.watch")

MAX_BUFFER = 100_000
DIRECT_WRITE_LIMIT = 1 << 20
TYPE_CODES = {"ADDED": 0, "MODIFIED": 1, "DELETED": 2}
TYPE_NAMES = ("ADDED", "MODIFIED", "DELETED")
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
        "json",
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
        self.json: bytes | None = None

    def ensure_fields(self, plural: str) -> None:
        if self.fields is None:
            self.fields = _fields.field_set(plural, self.obj)
            if self.prev is not None:
                self.prev_fields = _fields.field_set(plural, self.prev)

    def native(self) -> tuple[int, str, Any, Any, Any, Any]:
        return (TYPE_CODES[self.type], self.ns, self.labels, self.fields, self.prev_labels, self.prev_fields)


class Watcher:
    """One client watch: a buffer of payloads (bytes, already framed) or (type, CacheEvent) rows
    that the HTTP writer drains."""

    def __init__(
        self, namespace: str, label_selector: str, field_selector: str, raw_json: bool = False
    ) -> None:
        self.id = next(_ids)
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.raw_json = raw_json  # plain JSON objects: accepts pre-framed payloads
        self.buf: list[Any] = []
        self.wake = asyncio.Event()
        self.closed = False
        self.error: Exception | None = None
        self.last_rev = 0
        # set by the HTTP writer once it is streaming (chunked) and idle: JSON payloads may then be
        # written straight to the socket by the dispatcher
        self.transport: Any = None

    def deliver(self, etype: str, ev: CacheEvent) -> None:
        if self.closed:
            return
        self.buf.append((etype, ev))
        self.last_rev = ev.revision
        if len(self.buf) > MAX_BUFFER:
            self.close(None)
        self.wake.set()

    def deliver_payload(self, payload: bytes, rev: int) -> None:
        if self.closed:
            return
        t = self.transport
        if t is not None and not self.buf:
            # fast path: the HTTP writer is idle and the socket keeps up, so frame the chunk and
            # write it now instead of waking the writer task (order is kept: the buffer is empty)
            if not t.is_closing() and t.get_write_buffer_size() < DIRECT_WRITE_LIMIT:
                t.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                self.last_rev = rev
                return
        self.buf.append(payload)
        self.last_rev = rev
        if len(self.buf) > MAX_BUFFER:
            self.close(None)
        self.wake.set()

    def close(self, error: Exception | None) -> None:
        self.transport = None
        self.closed = True
        self.error = error
        self.wake.set()

    def drain(self) -> list[Any]:
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


def replay(w: Watcher, events: Any, plural: str, from_rev: int) -> None:
    """Deliver to one watcher the events after from_rev that it would have seen (plain Python:
    a single watcher, the window only)."""
    single = PyFanout()
    single.add(w.id, w, w.namespace, w.label_selector, w.field_selector)
    for ev in events:
        if ev.revision <= from_rev:
            continue
        if w.field_selector:
            ev.ensure_fields(plural)
        for etype, _ in single.dispatch(ev.type, ev.ns, ev.labels, ev.fields, ev.prev_labels, ev.prev_fields):
            w.deliver(etype, ev)


class WatchCache:
    def __init__(
        self,
        store: Store,
        res: Resource,
        decode: Callable[[bytes, int], dict[str, Any]],
        window: int = 10_000,
    ) -> None:
        self.store, self.res, self.decode = store, res, decode
        self.window: deque[CacheEvent] = deque(maxlen=window)
        self.start_rev = 0
        self.dropped_rev = 0
        self.rev = 0
        self.json_fanout = _native.WatchFanout()
        self.row_fanout = _native.WatchFanout()
        self.watchers: dict[int, Watcher] = {}
        self.task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.field_watchers = 0
        self.selector_watchers = 0
        self.events_total = 0
        self._pending: list[Event] = []
        self._pending_wake = asyncio.Event()

    async def ensure_started(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run())
        await self._started.wait()

    def covered_from(self) -> int:
        """Every event after this revision is in the window."""
        return max(self.start_rev, self.dropped_rev)

    async def _run(self) -> None:
        while True:
            reader: asyncio.Task[None] | None = None
            try:
                self.start_rev = self.rev = await self.store.current_revision()
                self.window.clear()
                self.dropped_rev = 0
                self._started.set()
                reader = asyncio.create_task(self._read(self.store.watch(self.res.prefix(), self.start_rev)))
                while True:
                    if not self._pending:
                        self._pending_wake.clear()
                        waiter = asyncio.create_task(self._pending_wake.wait())
                        done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                        if waiter not in done:
                            waiter.cancel()
                    batch, self._pending = self._pending, []
                    if batch:
                        self._dispatch(batch)
                    elif reader.done():
                        reader.result()
                        return
            except asyncio.CancelledError:
                if reader is not None:
                    reader.cancel()
                raise
            except Exception as e:  # store watch ended (overflow, compaction, restart): watchers re-watch
                log.warning("watch cache for %s restarting: %s", self.res.plural, e)
                if reader is not None:
                    reader.cancel()
                self._pending = []
                for w in list(self.watchers.values()):
                    w.close(None)
                await asyncio.sleep(0.2)

    async def _read(self, it: Any) -> None:
        async for ev in it:
            self._pending.append(ev)
            self._pending_wake.set()

    def _dispatch(self, raw: list[Event]) -> None:
        need_fields = self.field_watchers > 0
        plural = self.res.plural
        batch = [_decode_event(e, self.decode, plural, need_fields) for e in raw]
        for ev in batch:
            if len(self.window) == self.window.maxlen:
                self.dropped_rev = self.window[0].revision
            self.window.append(ev)
        self.rev = batch[-1].revision
        self.events_total += len(batch)
        if not self.watchers:
            return
        events = [ev.native() for ev in batch]
        if len(self.json_fanout):
            objects = []
            for ev in batch:
                if ev.json is None:
                    ev.json = to_json(ev.obj)
                objects.append(ev.json)
            prev_objects = None
            if self.selector_watchers:
                prev_objects = [
                    to_json(ev.prev) if ev.type == "MODIFIED" and ev.prev is not None else None
                    for ev in batch
                ]
            ids, payloads = self.json_fanout.fanout(events, objects, prev_objects)
            rev = self.rev
            watchers = self.watchers
            for wid, payload in zip(ids, payloads, strict=True):
                w = watchers.get(wid)
                if w is not None:
                    w.deliver_payload(payload, rev)
        if len(self.row_fanout):
            wids, idx, types = self.row_fanout.dispatch(events)
            for wid, i, t in zip(wids.tolist(), idx.tolist(), types.tolist(), strict=True):
                w = self.watchers.get(wid)
                if w is not None:
                    w.deliver(TYPE_NAMES[t], batch[i])

    def subscribe(self, w: Watcher, from_rev: int) -> bool:
        """Attach a watcher that has seen everything up to from_rev. False if the window does not
        reach back that far (the caller then serves it from the store)."""
        if from_rev < self.covered_from():
            return False
        fan = self.json_fanout if w.raw_json else self.row_fanout
        try:
            fan.add(w.id, w.namespace or None, w.label_selector, w.field_selector)
        except ValueError as e:
            from hyperkube.api import errors

            raise errors.bad_request(str(e)) from None
        self.watchers[w.id] = w
        if w.field_selector:
            self.field_watchers += 1
        if w.field_selector or w.label_selector:
            self.selector_watchers += 1
        if self.window and self.window[-1].revision > from_rev:
            replay(w, self.window, self.res.plural, from_rev)
        return True

    def unsubscribe(self, w: Watcher) -> None:
        if self.watchers.pop(w.id, None) is not None:
            (self.json_fanout if w.raw_json else self.row_fanout).remove(w.id)
            if w.field_selector:
                self.field_watchers -= 1
            if w.field_selector or w.label_selector:
                self.selector_watchers -= 1

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
