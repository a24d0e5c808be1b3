"""Watcher plumbing shared by the backends: a bounded per-watcher buffer and the fan-out.

Writers never wait for watchers. Each watcher owns a bounded buffer; the writer side appends
events with :meth:`Watcher.push` (never blocks). A watcher whose buffer would exceed its bound is
marked overflowed and removed from the fan-out; the consumer sees :class:`WatchOverflow` as soon as
it asks for the next event, so it is never silently dropped and re-lists.

The fan-out keeps watchers by prefix: each commit's events are matched with ``str.startswith``
against every registered prefix (typically a handful of resource prefixes, each with many
watchers), so the matching cost is per (event, distinct prefix), not per (event, watcher).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from .interface import Event, WatchOverflow

DEFAULT_WATCH_QUEUE = 10_000


class Watcher:
    __slots__ = ("prefix", "limit", "buf", "wake", "error", "closed")

    def __init__(self, prefix: str, limit: int = DEFAULT_WATCH_QUEUE) -> None:
        self.prefix = prefix
        self.limit = limit
        self.buf: deque[Event] = deque()
        self.wake = asyncio.Event()
        self.error: BaseException | None = None
        self.closed = False

    def push(self, events: list[Event]) -> bool:
        """Append events (already matched to the prefix). False when the watcher overflowed."""
        if self.error is not None or self.closed:
            return False
        if len(self.buf) + len(events) > self.limit:
            self.error = WatchOverflow(
                f"watch on {self.prefix!r} fell more than {self.limit} events behind and was ended; re-list"
            )
            self.buf.clear()
            self.wake.set()
            return False
        self.buf.extend(events)
        self.wake.set()
        return True

    def end(self, error: BaseException | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.closed = True
        self.wake.set()

    async def next_batch(self) -> list[Event] | None:
        """Wait for buffered events; None when ended cleanly; raises the error it was ended with."""
        while True:
            if self.buf:
                out = list(self.buf)
                self.buf.clear()
                return out
            if self.error is not None:
                raise self.error
            if self.closed:
                return None
            self.wake.clear()
            await self.wake.wait()


class Fanout:
    """The registered watchers of one store, grouped by prefix."""

    def __init__(self) -> None:
        self.by_prefix: dict[str, set[Watcher]] = {}

    def add(self, w: Watcher) -> None:
        self.by_prefix.setdefault(w.prefix, set()).add(w)

    def remove(self, w: Watcher) -> None:
        ws = self.by_prefix.get(w.prefix)
        if ws is not None:
            ws.discard(w)
            if not ws:
                del self.by_prefix[w.prefix]

    def publish(self, events: Iterable[Event]) -> None:
        if not self.by_prefix:
            return
        evs = events if isinstance(events, list) else list(events)
        for prefix, ws in list(self.by_prefix.items()):
            matched = [e for e in evs if e.key.startswith(prefix)] if prefix else evs
            if not matched:
                continue
            for w in list(ws):
                if not w.push(matched):
                    self.remove(w)

    def close_all(self, error: BaseException | None = None) -> None:
        for ws in list(self.by_prefix.values()):
            for w in ws:
                w.end(error)
        self.by_prefix.clear()


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
