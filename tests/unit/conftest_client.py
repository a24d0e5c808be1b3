"""A small in-memory API server (aiohttp) for the client's unit tests.

It serves upstream's URL layout for any resource, with a global resourceVersion, conditional
updates (409), generateName, label-selector lists with limit/continue, watch streams that resume
from a resourceVersion (410 Expired below the compaction point), bookmarks, the status and scale
subresources, merge and JSON patches, and Status errors. Tests can inject failures
(``fail_next``), compact the history (``compact``) and cut every open watch (``close_watches``).
It is a fake for unit tests only; integration tests use the real ``hyperkube server``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from hyperkube import _native
from hyperkube.client import Client


def status(code: int, reason: str, message: str, details: dict | None = None) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(doc: Any, ops: list[dict]) -> Any:
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif op["op"] == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                del parent[last]
        elif op["op"] == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
    return doc


class FakeApiServer:
    def __init__(self) -> None:
        self.rv = 100
        self.objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
        self.log: list[tuple[int, tuple[str, str], str, dict]] = []
        self.compacted = 0
        self.watchers: list[tuple[tuple[str, str], str | None, Any, asyncio.Queue]] = []
        self.failures: list[tuple[str | None, int, str]] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.bookmark_interval: float | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.close_watches()
        if self.runner:
            await self.runner.cleanup()

    # -- test controls ---------------------------------------------------------------------------

    def fail_next(
        self, code: int = 500, reason: str = "InternalError", method: str | None = None, times: int = 1
    ) -> None:
        for _ in range(times):
            self.failures.append((method, code, reason))

    def compact(self) -> None:
        self.compacted = self.rv
        self.log = []

    def close_watches(self) -> None:
        for *_, q in self.watchers:
            q.put_nowait(None)

    def put(self, group: str, plural: str, obj: dict) -> dict:
        """Store an object directly (as another client would), emitting a watch event."""
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        coll = self.objects.setdefault((group, plural), {})
        typ = "MODIFIED" if key in coll else "ADDED"
        meta.setdefault("uid", str(uuid.uuid4()))
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        coll[key] = obj
        self._emit((group, plural), typ, obj)
        return obj

    def remove(self, group: str, plural: str, namespace: str, name: str) -> None:
        obj = self.objects[(group, plural)].pop((namespace, name))
        self.rv += 1
        obj = dict(obj, metadata=dict(obj["metadata"], resourceVersion=str(self.rv)))
        self._emit((group, plural), "DELETED", obj)

    def _emit(self, gr: tuple[str, str], typ: str, obj: dict) -> None:
        self.log.append((self.rv, gr, typ, copy.deepcopy(obj)))
        ns = obj["metadata"].get("namespace", "")
        for wgr, wns, sel, q in self.watchers:
            if wgr == gr and (not wns or wns == ns) and sel.matches(obj["metadata"].get("labels")):
                q.put_nowait((typ, copy.deepcopy(obj)))

    # -- routing -----------------------------------------------------------------------------------

    def _parse(self, path: str) -> tuple[str, str, str, str | None, str | None, str | None] | None:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        ns = None
        if rest and rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        if not rest:
            return None
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return group, version, plural, ns, name, sub

    async def handle(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        self.requests.append((request.method, request.path, q))
        for i, (m, code, reason) in enumerate(self.failures):
            if m is None or m == request.method:
                del self.failures[i]
                return status(code, reason, f"injected {reason}")
        parsed = self._parse(request.path)
        if parsed is None:
            return status(
                404, "NotFound", f"the server could not find the requested resource ({request.path})"
            )
        group, version, plural, ns, name, sub = parsed
        gr = (group, plural)
        coll = self.objects.setdefault(gr, {})
        m = request.method
        if m == "GET" and name is None:
            if q.get("watch") in ("1", "true"):
                return await self._watch(request, gr, ns, q)
            return self._list(gr, ns, q, group, version, plural)
        if m == "GET":
            obj = coll.get((ns or "", name))
            if obj is None:
                return status(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})
            if sub == "scale":
                return web.json_response(self._scale(obj))
            return web.json_response(obj)
        body = await request.json() if request.can_read_body else {}
        if m == "POST":
            if sub:
                return web.json_response({"kind": "Status", "status": "Success", "code": 201}, status=201)
            meta = body.setdefault("metadata", {})
            if not meta.get("name"):
                if meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                else:
                    return status(422, "Invalid", f"{plural} is invalid: metadata.name: Required value")
            if ns:
                meta["namespace"] = ns
            if (ns or "", meta["name"]) in coll:
                return status(
                    409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists', {"name": meta["name"]}
                )
            meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
            meta.setdefault("generation", 1)
            return web.json_response(self.put(group, plural, body), status=201)
        key = (ns or "", name or "")
        cur = coll.get(key)
        if cur is None:
            return status(404, "NotFound", f'{plural} "{name}" not found', {"name": name})
        if m == "DELETE":
            self.remove(group, plural, *key)
            return web.json_response(cur)
        if m == "PUT":
            want = body.get("metadata", {}).get("resourceVersion")
            if want and want != cur["metadata"]["resourceVersion"]:
                return status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                )
            new = copy.deepcopy(cur)
            if sub == "status":
                new["status"] = body.get("status")
            elif sub == "scale":
                new.setdefault("spec", {})["replicas"] = body["spec"]["replicas"]
            else:
                new = body
                new["metadata"]["uid"] = cur["metadata"]["uid"]
                if new.get("spec") != cur.get("spec"):
                    new["metadata"]["generation"] = cur["metadata"].get("generation", 1) + 1
            return web.json_response(self.put(group, plural, new))
        if m == "PATCH":
            ctype = request.headers.get("Content-Type", "")
            try:
                if "json-patch" in ctype:
                    new = json_patch(cur, body)
                elif sub == "scale":
                    new = merge_patch(cur, {"spec": {"replicas": body["spec"]["replicas"]}})
                else:
                    new = merge_patch(cur, body)
            except Exception as e:
                return status(422, "Invalid", str(e))
            return web.json_response(self.put(group, plural, new))
        return status(405, "MethodNotAllowed", "method not allowed")

    def _scale(self, obj: dict) -> dict:
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": obj["metadata"],
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
        }

    def _list(
        self, gr: tuple[str, str], ns: str | None, q: dict, group: str, version: str, plural: str
    ) -> web.Response:
        sel = _native.Selector(q.get("labelSelector", ""))
        items = sorted(
            (
                o
                for (ons, _), o in self.objects.get(gr, {}).items()
                if (not ns or ons == ns) and sel.matches(o["metadata"].get("labels"))
            ),
            key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
        )
        start = 0
        rv = str(self.rv)
        if q.get("continue"):
            tok = json.loads(q["continue"])
            start, rv = tok["start"], tok["rv"]
            if int(rv) < self.compacted:
                return status(410, "Expired", "The provided continue parameter is too old")
        limit = int(q.get("limit") or 0)
        meta: dict[str, Any] = {"resourceVersion": rv}
        if limit and start + limit < len(items):
            meta["continue"] = json.dumps({"start": start + limit, "rv": rv})
            meta["remainingItemCount"] = len(items) - start - limit
            page = items[start : start + limit]
        else:
            page = items[start:]
        page = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        api_version = f"{group}/{version}" if group else version
        return web.json_response({"kind": "List", "apiVersion": api_version, "metadata": meta, "items": page})

    async def _watch(
        self, request: web.Request, gr: tuple[str, str], ns: str | None, q: dict
    ) -> web.StreamResponse:
        rv = int(q.get("resourceVersion") or 0)
        if rv and rv < self.compacted:
            return status(410, "Expired", f"too old resource version: {rv} ({self.compacted})")
        sel = _native.Selector(q.get("labelSelector", ""))
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        if rv:
            for erv, egr, typ, obj in self.log:
                if (
                    egr == gr
                    and erv > rv
                    and (not ns or obj["metadata"].get("namespace") == ns)
                    and sel.matches(obj["metadata"].get("labels"))
                ):
                    queue.put_nowait((typ, copy.deepcopy(obj)))
        else:
            for o in self.objects.get(gr, {}).values():
                if (not ns or o["metadata"].get("namespace") == ns) and sel.matches(
                    o["metadata"].get("labels")
                ):
                    queue.put_nowait(("ADDED", copy.deepcopy(o)))
        w = (gr, ns, sel, queue)
        self.watchers.append(w)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self.bookmark_interval)
                except TimeoutError:
                    if q.get("allowWatchBookmarks") == "true":
                        bm = {
                            "type": "BOOKMARK",
                            "object": {"kind": "", "metadata": {"resourceVersion": str(self.rv)}},
                        }
                        await resp.write(json.dumps(bm).encode() + b"\n")
                    continue
                if item is None:
                    break
                if isinstance(item, dict):
                    await resp.write(json.dumps(item).encode() + b"\n")
                    continue
                typ, obj = item
                await resp.write(json.dumps({"type": typ, "object": obj}).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.remove(w)
        return resp

    def send_watch_error(self, code: int = 410, reason: str = "Expired") -> None:
        """Send an ERROR event on every open watch (as a server whose history was compacted)."""
        ev = {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": code,
                "reason": reason,
                "message": "too old resource version",
            },
        }
        for *_, q in self.watchers:
            q.put_nowait(ev)


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeApiServer]:
    srv = FakeApiServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def fake_client(fake_api: FakeApiServer) -> AsyncIterator[Client]:
    c = Client(fake_api.url)
    yield c
    await c.close()


async def eventually(pred: Any, timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``pred()`` (sync or async) until truthy; return its value or fail with the last one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while True:
        last = pred()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {last!r})")
        await asyncio.sleep(interval)
