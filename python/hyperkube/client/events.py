"""Event recorder: core/v1 Events that ``kubectl describe`` shows (client-go's ``tools/record``).

``recorder.event(obj, "Normal", "SuccessfulCreate", "Created pod: web-x1")`` never blocks: the event
goes into a queue that a background task drains (as client-go's broadcaster does), so a slow or
unavailable API server never stalls a controller.

Aggregation, as client-go's ``EventCorrelator``: an event identical to a recent one (same source,
involved object, type, reason and message) is not created again; the existing Event's ``count``
is incremented and ``lastTimestamp`` moved, with a merge patch. A per-object token bucket
(burst 25, one more every 5 minutes) drops floods from one object, as upstream's spam filter.
Event names are ``{object name}.{unix nanoseconds in hex}``; cluster-scoped objects' events go to
the ``default`` namespace.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from typing import Any

from hyperkube.client.errors import NotFound
from hyperkube.client.resources import EVENTS
from hyperkube.client.rest import Client
from hyperkube.client.timeutil import micro_time, rfc3339

log = logging.getLogger("hyperkube.client.events")

NORMAL = "Normal"
WARNING = "Warning"


def object_reference(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    def __init__(
        self,
        client: Client,
        component: str,
        host: str | None = None,
        *,
        cache_size: int = 4096,
        spam_burst: int = 25,
        spam_refill_seconds: float = 300.0,
        max_queue: int = 10000,
    ):
        self.client = client
        self.component = component
        self.host = host if host is not None else socket.gethostname()
        self._queue: asyncio.Queue[tuple[dict, str, str, str, str]] | None = None
        self._task: asyncio.Task | None = None
        self._cache: OrderedDict[tuple, tuple[str, str, int, str]] = OrderedDict()
        self._cache_size = cache_size
        self._spam: dict[str, tuple[float, float]] = {}
        self._spam_burst = spam_burst
        self._spam_refill = spam_refill_seconds
        self._max_queue = max_queue
        self.sent = 0
        self.dropped = 0

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an event (non-blocking)."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._queue.qsize() >= self._max_queue:
            self.dropped += 1
            return
        ref = object_reference(obj)
        self._queue.put_nowait((ref, type_, reason, message, rfc3339()))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"events:{self.component}")

    def eventf(self, obj: dict[str, Any], type_: str, reason: str, fmt: str, *args: Any) -> None:
        self.event(obj, type_, reason, fmt % args if args else fmt)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued event has been sent (or given up on)."""
        if self._queue is not None:
            await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self) -> None:
        try:
            await self.flush(5.0)
        except TimeoutError:
            pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _allow(self, ref: dict[str, Any]) -> bool:
        key = f"{ref.get('kind')}/{ref.get('namespace', '')}/{ref.get('name')}/{ref.get('uid', '')}"
        now = time.monotonic()
        tokens, last = self._spam.get(key, (float(self._spam_burst), now))
        tokens = min(float(self._spam_burst), tokens + (now - last) / self._spam_refill)
        if tokens < 1:
            self._spam[key] = (tokens, now)
            return False
        self._spam[key] = (tokens - 1, now)
        if len(self._spam) > 4 * self._cache_size:
            self._spam.clear()
        return True

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            ref, type_, reason, message, ts = await self._queue.get()
            try:
                if self._allow(ref):
                    await self._send(ref, type_, reason, message, ts)
                else:
                    self.dropped += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - events are best effort
                log.info("event %s %s/%s dropped: %s", reason, ref.get("namespace", ""), ref.get("name"), e)
                self.dropped += 1
            finally:
                self._queue.task_done()

    async def _send(self, ref: dict[str, Any], type_: str, reason: str, message: str, ts: str) -> None:
        ns = ref.get("namespace") or "default"
        key = (ref.get("kind"), ns, ref.get("name"), ref.get("uid"), type_, reason, message)
        hit = self._cache.get(key)
        if hit is not None:
            ev_ns, ev_name, count, first = hit
            try:
                await self.client.patch(
                    EVENTS, ev_name, {"count": count + 1, "lastTimestamp": ts, "message": message}, ev_ns
                )
                self._cache[key] = (ev_ns, ev_name, count + 1, first)
                self._cache.move_to_end(key)
                self.sent += 1
                return
            except NotFound:
                del self._cache[key]
        name = f"{ref.get('name', 'unknown')}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": {"component": self.component, "host": self.host}
            if self.host
            else {"component": self.component},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": self.host or "",
        }
        await self.client.create(EVENTS, body, ns)
        self.sent += 1
        self._cache[key] = (ns, name, 1, ts)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


__all__ = ["NORMAL", "WARNING", "EventRecorder", "micro_time", "object_reference"]
