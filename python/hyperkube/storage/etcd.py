"""etcd Store: a real etcd v3 cluster (``etcd://host:port[,host:port]``, ``etcds://`` for TLS).

We speak etcd's own v3 API through its JSON gRPC gateway (``POST /v3/...`` on the client port,
served by etcd 3.4+ next to gRPC), with aiohttp, which hyperkube already depends on: no gRPC
stack or generated protobuf code, and the master talks to etcd over plain HTTP(S) like any other
service. Keys and values travel base64-encoded; 64-bit numbers are JSON strings.

- ``get``/``list``/``count``: ``/v3/kv/range`` (``revision`` for reads in the past, ``limit``
  plus ``more``/``count`` for pages; a page continues at ``continue_key + "\\0"``).
- ``create``: ``/v3/kv/txn`` comparing ``create_revision == 0`` (absent) then put.
- ``update``/``delete``: a txn comparing ``mod_revision == expected`` (or ``create_revision > 0``
  when unconditional), with ``prev_kv``; the failure branch reads the key to tell a
  :class:`Conflict` (with the actual revision) from :class:`NotFound`.
- ``watch``: ``/v3/watch`` streaming with ``start_revision = from + 1`` and ``prev_kv``. A reader
  task moves events into the same bounded per-watcher buffer as the other backends, so a slow
  consumer is ended with :class:`WatchOverflow` instead of holding a stream open forever.
- ``compact``: ``/v3/kv/compaction``. etcd's "required revision has been compacted" and a
  watch cancelled with ``compact_revision`` both become :class:`Compacted`.

Several endpoints may be given; a request that cannot connect moves on to the next one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from ._watch import DEFAULT_WATCH_QUEUE, Watcher
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

API = "/v3"  # etcd 3.4 serves /v3/ (and the deprecated /v3beta/); 3.3 only /v3beta/


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _range_end(prefix: bytes) -> bytes:
    """etcd's prefix range end: the prefix with its last byte incremented ("\\0" = no bound)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\x00"


def _kv(d: dict[str, Any]) -> KeyValue:
    return KeyValue(
        _unb64(d.get("key")).decode(),
        _unb64(d.get("value")),
        int(d.get("create_revision", 0)),
        int(d.get("mod_revision", 0)),
    )


class EtcdStore:
    """Revisioned store backed by a real etcd v3 cluster over its JSON gateway."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        watch_queue: int = DEFAULT_WATCH_QUEUE,
        timeout: float = 30.0,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._ca, self._cert, self._key = ca, cert, key
        self._watch_queue = int(watch_queue)
        self._timeout = float(timeout)
        self._session: aiohttp.ClientSession | None = None
        self._ep = 0
        self._watch_tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> EtcdStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _ssl(self) -> ssl.SSLContext | None:
        if not any(e.startswith("https://") for e in self.endpoints):
            return None
        ctx = ssl.create_default_context(cafile=self._ca)
        if self._cert:
            ctx.load_cert_chain(self._cert, self._key)
        return ctx

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(limit=256, ssl=self._ssl() or False)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout),
            json_serialize=json.dumps,
        )
        try:
            await self.current_revision()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for t in list(self._watch_tasks):
            t.cancel()
        for t in list(self._watch_tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests ------------------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:
            raise StorageError("etcd store is not started (or closed)")
        last: Exception | None = None
        for i in range(len(self.endpoints)):
            ep = self.endpoints[(self._ep + i) % len(self.endpoints)]
            try:
                async with self._session.post(
                    ep + API + path, json=body, timeout=aiohttp.ClientTimeout(total=self._timeout)
                ) as resp:
                    data = await resp.json(content_type=None)
            except aiohttp.ClientConnectorError as e:  # nothing was sent: safe to try the next one
                last = e
                continue
            except (aiohttp.ClientError, TimeoutError) as e:
                raise StorageError(f"etcd request {path} to {ep} failed: {e}") from e
            self._ep = (self._ep + i) % len(self.endpoints)
            if resp.status != 200 or "error" in data:
                err = self._error(data, body, resp.status)
                if isinstance(err, Compacted):
                    err = Compacted(err.requested, await self._compacted_revision())
                raise err
            return data  # type: ignore[no-any-return]
        raise StorageError(f"cannot reach etcd at {', '.join(self.endpoints)}: {last}")

    def _error(self, data: dict[str, Any], body: dict[str, Any], status: int) -> StorageError:
        msg = str(data.get("message") or data.get("error") or data)
        requested = int(body.get("revision", 0) or 0)
        if "required revision has been compacted" in msg:
            return Compacted(requested, requested)
        if "required revision is a future revision" in msg:
            return FutureRevision(requested, 0)
        return StorageError(f"etcd error (HTTP {status}): {msg}")

    async def _compacted_revision(self) -> int:
        """etcd's compacted revision: a watch from revision 1 is cancelled with it (0: unknown).

        Only used on the error path (etcd's "compacted" error does not carry the revision), when
        the cancellation is known to follow the watch's "created" message at once.
        """
        assert self._session is not None
        body = {"create_request": {"key": _b64("\x00"), "start_revision": 1}}
        try:
            async with self._session.post(
                self.endpoints[self._ep] + API + "/watch", json=body, timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                for _ in range(3):
                    line = await resp.content.readline()
                    if not line:
                        break
                    res = json.loads(line).get("result") or {}
                    if res.get("compact_revision"):
                        return int(res["compact_revision"])
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        return 0

    async def current_revision(self) -> int:
        data = await self._post("/kv/range", {"key": _b64("\x00"), "count_only": True})
        return int(data["header"]["revision"])

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, key: str, revision: int | None = None) -> KeyValue:
        body: dict[str, Any] = {"key": _b64(key)}
        if revision:
            body["revision"] = revision
        data = await self._post("/kv/range", body)
        kvs = data.get("kvs") or []
        if not kvs:
            raise NotFound(key)
        return _kv(kvs[0])

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 0,
        continue_key: str | None = None,
        revision: int | None = None,
    ) -> ListResult:
        pb = prefix.encode()
        start = pb if not continue_key or continue_key < prefix else continue_key.encode() + b"\x00"
        body: dict[str, Any] = {"key": _b64(start or b"\x00"), "range_end": _b64(_range_end(pb))}
        if limit:
            body["limit"] = limit
        if revision:
            body["revision"] = revision
        data = await self._post("/kv/range", body)
        items = [_kv(d) for d in data.get("kvs") or []]
        more = bool(data.get("more"))
        count = int(data.get("count", 0))
        rev = revision or int(data["header"]["revision"])
        return ListResult(items, rev, items[-1].key if more and items else None, max(0, count - len(items)))

    async def count(self, prefix: str) -> int:
        pb = prefix.encode()
        data = await self._post(
            "/kv/range", {"key": _b64(pb or b"\x00"), "range_end": _b64(_range_end(pb)), "count_only": True}
        )
        return int(data.get("count", 0))

    # -- writes --------------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        k = _b64(key)
        data = await self._post(
            "/kv/txn",
            {
                "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
                "success": [{"request_put": {"key": k, "value": _b64(value)}}],
            },
        )
        if not data.get("succeeded"):
            raise AlreadyExists(key)
        rev = int(data["header"]["revision"])
        return KeyValue(key, bytes(value), rev, rev)

    def _guard(self, k: str, expected: int | None) -> dict[str, Any]:
        if expected is None:
            return {"key": k, "target": "CREATE", "result": "GREATER", "create_revision": 0}
        return {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": expected}

    def _failed(self, key: str, expected: int | None, data: dict[str, Any]) -> StorageError:
        resp = (data.get("responses") or [{}])[0].get("response_range") or {}
        kvs = resp.get("kvs") or []
        if not kvs:
            return NotFound(key)
        return Conflict(key, expected or 0, int(kvs[0].get("mod_revision", 0)))

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> KeyValue:
        k = _b64(key)
        data = await self._post(
            "/kv/txn",
            {
                "compare": [self._guard(k, expected_mod_revision)],
                "success": [{"request_put": {"key": k, "value": _b64(value), "prev_kv": True}}],
                "failure": [{"request_range": {"key": k}}],
            },
        )
        if not data.get("succeeded"):
            raise self._failed(key, expected_mod_revision, data)
        prev = data["responses"][0]["response_put"].get("prev_kv") or {}
        rev = int(data["header"]["revision"])
        return KeyValue(key, bytes(value), int(prev.get("create_revision", rev)), rev)

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        k = _b64(key)
        data = await self._post(
            "/kv/txn",
            {
                "compare": [self._guard(k, expected_mod_revision)],
                "success": [{"request_delete_range": {"key": k, "prev_kv": True}}],
                "failure": [{"request_range": {"key": k}}],
            },
        )
        if not data.get("succeeded"):
            raise self._failed(key, expected_mod_revision, data)
        prevs = data["responses"][0]["response_delete_range"].get("prev_kvs") or []
        if not prevs:  # deleted by someone else between compare and delete cannot happen in a txn
            raise NotFound(key)
        prev = _kv(prevs[0])
        return KeyValue(key, prev.value, prev.create_revision, int(data["header"]["revision"]))

    async def compact(self, revision: int) -> None:
        await self._post("/kv/compaction", {"revision": revision})

    # -- watch ---------------------------------------------------------------------------------

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        if self._session is None:
            raise StorageError("etcd store is not started (or closed)")
        w = Watcher(prefix, self._watch_queue)
        created: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._watch_stream(w, prefix, from_revision, created))
        self._watch_tasks.add(task)
        task.add_done_callback(self._watch_tasks.discard)
        try:
            await created
            while True:
                batch = await w.next_batch()
                if batch is None:
                    return
                for e in batch:
                    yield e
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _watch_stream(
        self, w: Watcher, prefix: str, from_revision: int, created: asyncio.Future[None]
    ) -> None:
        assert self._session is not None
        pb = prefix.encode()
        body = {
            "create_request": {
                "key": _b64(pb or b"\x00"),
                "range_end": _b64(_range_end(pb)),
                "start_revision": from_revision + 1,
                "prev_kv": True,
            }
        }
        ep = self.endpoints[self._ep]
        try:
            async with self._session.post(ep + API + "/watch", json=body) as resp:
                if resp.status != 200:
                    raise StorageError(f"etcd watch on {ep} failed: HTTP {resp.status} {await resp.text()}")
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            self._on_message(w, json.loads(line), from_revision, created)
                        if w.error is not None or w.closed:
                            return
                raise StorageError(f"etcd watch stream from {ep} ended")
        except asyncio.CancelledError:
            w.end()
            raise
        except BaseException as e:
            err = (
                e
                if isinstance(e, StorageError)
                else StorageError(f"etcd watch on {ep} failed: {e or type(e).__name__}")
            )
            if not created.done():
                created.set_exception(err)
            w.end(err)

    def _on_message(
        self, w: Watcher, msg: dict[str, Any], from_revision: int, created: asyncio.Future[None]
    ) -> None:
        if "error" in msg:
            raise StorageError(f"etcd watch error: {msg['error'].get('message', msg['error'])}")
        res = msg.get("result") or {}
        if res.get("canceled"):
            compact = int(res.get("compact_revision", 0) or 0)
            if compact:
                raise Compacted(from_revision, compact)
            raise StorageError(f"etcd cancelled the watch: {res.get('cancel_reason', 'no reason given')}")
        if res.get("created") and not created.done():
            created.set_result(None)
        evs = res.get("events")
        if not evs:
            return
        out = []
        for ev in evs:
            kv = ev.get("kv") or {}
            prev = ev.get("prev_kv")
            key = _unb64(kv.get("key")).decode()
            rev = int(kv.get("mod_revision", 0))
            if ev.get("type") == "DELETE":
                p = prev or {}
                out.append(
                    Event(
                        EventType.DELETED,
                        key,
                        rev,
                        None,
                        _unb64(p.get("value")) if prev else None,
                        int(p.get("create_revision", 0)),
                    )
                )
            else:
                crev = int(kv.get("create_revision", 0))
                typ = EventType.ADDED if crev == rev else EventType.MODIFIED
                out.append(
                    Event(
                        typ,
                        key,
                        rev,
                        _unb64(kv.get("value")),
                        _unb64(prev.get("value")) if prev else None,
                        crev,
                    )
                )
        w.push(out)
