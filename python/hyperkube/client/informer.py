"""Informers: a reflector (list + watch) feeding a local cache and event handlers.

This is client-go's ``tools/cache`` reduced to what asyncio needs:

- :class:`Reflector` lists a resource in pages (``limit``/``continue``), then watches from the
  list's resourceVersion with ``allowWatchBookmarks``. When a watch ends (server timeout) it
  resumes from the last resourceVersion seen (bookmarks advance it too); a ``410 Gone/Expired``
  makes it re-list; any other error backs off exponentially (0.8 s doubling to 30 s, jittered,
  as client-go's backoff manager) and then resumes from the last resourceVersion.
- :class:`SharedInformer` applies what the reflector delivers to a :class:`~.store.Store` and calls
  the registered handlers (``on_add(obj)``, ``on_update(old, new)``, ``on_delete(obj)``; plain
  functions or coroutines). A re-list is turned into the adds/updates/deletes it implies, so
  handlers never miss a deletion that happened during a disconnect. Handlers registered after the
  cache is filled get an ``on_add`` for every cached object first. Each handler may ask for a
  periodic resync (``on_update(obj, obj)`` for every cached object). A ``transform`` applied to
  every object before it is cached drops ``managedFields`` by default, as client-go's.
- :class:`SharedInformerFactory` hands out one informer per (resource, namespace, selectors), so a
  process opens one watch per resource however many controllers use it; ``wait_for_sync`` waits
  for the initial lists.

Everything runs on one event loop: the store is mutated without awaiting, then handlers run.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hyperkube.client.errors import ApiError, Gone
from hyperkube.client.resources import Resource
from hyperkube.client.rest import Client, ResourceLike, _res
from hyperkube.client.store import IndexFunc, Obj, Store, meta_namespace_key

log = logging.getLogger("hyperkube.client.informer")

Handler = Callable[..., Any]


def strip_managed_fields(obj: Obj) -> Obj:
    """The default transform: ``metadata.managedFields`` is never needed by a controller and can
    be the largest part of an object (client-go's ``TransformStripManagedFields``)."""
    md = obj.get("metadata")
    if md and "managedFields" in md:
        md.pop("managedFields")
    return obj


def resource_version(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion") or ""


class Backoff:
    """Exponential backoff with jitter: ``initial`` doubling up to ``cap``; ``reset()`` after success."""

    def __init__(self, initial: float = 0.8, cap: float = 30.0, factor: float = 2.0, jitter: float = 0.5):
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self._next = initial

    def next(self) -> float:
        d = self._next
        self._next = min(self.cap, self._next * self.factor)
        return d * (1 + self.jitter * random.random())

    def reset(self) -> None:
        self._next = self.initial


class Reflector:
    """List + watch one resource; deliver ``replace(items, rv)`` and ``event(type, obj)``."""

    def __init__(
        self,
        client: Client,
        resource: ResourceLike,
        on_replace: Callable[[list[Obj], str], Awaitable[None]],
        on_event: Callable[[str, Obj], Awaitable[None]],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        min_watch_timeout: float = 300.0,
        backoff: Backoff | None = None,
    ):
        self.client = client
        self.resource: Resource = _res(resource)
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.min_watch_timeout = min_watch_timeout
        self.backoff = backoff or Backoff()
        self._on_replace = on_replace
        self._on_event = on_event
        self.last_resource_version: str | None = None
        self.lists = 0  # how many full lists were done (1 + re-lists)
        self.watches = 0

    async def run(self) -> None:
        while True:
            try:
                if self.last_resource_version is None:
                    await self._list()
                await self._watch()
                self.backoff.reset()
            except asyncio.CancelledError:
                raise
            except Gone as e:
                log.info(
                    "%s: watch from %s expired (%s); re-listing", self.resource, self.last_resource_version, e
                )
                self.last_resource_version = None
            except Exception as e:  # noqa: BLE001 - a reflector never dies; it retries
                delay = self.backoff.next()
                log.warning("%s: list/watch failed: %s; retrying in %.1fs", self.resource, _short(e), delay)
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        lst = await self.client.list_all(
            self.resource,
            self.namespace,
            page_size=self.page_size,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        rv = (lst.get("metadata") or {}).get("resourceVersion") or ""
        kind = self.resource.kind
        api_version = self.resource.api_version
        items = lst.get("items") or []
        for it in items:  # list items come without kind/apiVersion; watch events carry them
            if kind and "kind" not in it:
                it["kind"] = kind
                it["apiVersion"] = api_version
        self.lists += 1
        await self._on_replace(items, rv)
        self.last_resource_version = rv

    async def _watch(self) -> None:
        while True:
            timeout = int(self.min_watch_timeout * (1 + random.random()))
            self.watches += 1
            async for ev in self.client.watch(
                self.resource,
                self.namespace,
                resource_version=self.last_resource_version,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                allow_bookmarks=True,
                timeout_seconds=timeout,
            ):
                rv = resource_version(ev.object)
                if ev.type != "BOOKMARK":
                    await self._on_event(ev.type, ev.object)
                if rv:
                    self.last_resource_version = rv
                self.backoff.reset()


def _short(e: BaseException) -> str:
    return str(e) if isinstance(e, ApiError) else f"{type(e).__name__}: {e}"


@dataclass(eq=False)
class _Registration:
    on_add: Handler | None
    on_update: Handler | None
    on_delete: Handler | None
    resync_period: float
    task: asyncio.Task | None = None


async def _call(fn: Handler | None, *args: Any) -> None:
    if fn is None:
        return
    try:
        r = fn(*args)
        if inspect.isawaitable(r):
            await r
    except Exception:  # a handler's bug must not kill the informer
        log.exception("event handler %r failed", fn)


class SharedInformer:
    """A reflector + store + handlers for one resource (optionally one namespace / selector)."""

    def __init__(
        self,
        client: Client,
        resource: ResourceLike,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        resync_period: float = 0.0,
        page_size: int = 500,
        min_watch_timeout: float = 300.0,
        transform: Callable[[Obj], Obj] | None = strip_managed_fields,
    ):
        self.resource = _res(resource)
        self.transform = transform
        self.store = Store(meta_namespace_key, indexers)
        self.default_resync = resync_period
        self._handlers: list[_Registration] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.reflector = Reflector(
            client,
            self.resource,
            self._replace,
            self._event,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            page_size=page_size,
            min_watch_timeout=min_watch_timeout,
        )

    # -- handlers -------------------------------------------------------------------------------

    def add_event_handler(
        self,
        on_add: Handler | None = None,
        on_update: Handler | None = None,
        on_delete: Handler | None = None,
        *,
        resync_period: float | None = None,
    ) -> _Registration:
        reg = _Registration(
            on_add, on_update, on_delete, self.default_resync if resync_period is None else resync_period
        )
        self._handlers.append(reg)
        if self.has_synced:
            # late joiner: replay the cache as adds (scheduled, so the caller finishes registering first)
            asyncio.get_running_loop().create_task(self._replay(reg))
        if self._task is not None:
            self._start_resync(reg)
        return reg

    def remove_event_handler(self, reg: _Registration) -> None:
        if reg in self._handlers:
            self._handlers.remove(reg)
        if reg.task:
            reg.task.cancel()

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        self.store.add_indexers(indexers)

    async def _replay(self, reg: _Registration) -> None:
        for obj in self.store.list():
            await _call(reg.on_add, obj)

    def _start_resync(self, reg: _Registration) -> None:
        if reg.resync_period > 0 and reg.task is None:
            reg.task = asyncio.get_running_loop().create_task(self._resync_loop(reg))

    async def _resync_loop(self, reg: _Registration) -> None:
        while True:
            await asyncio.sleep(reg.resync_period)
            if not self.has_synced:
                continue
            for obj in self.store.list():
                await _call(reg.on_update, obj, obj)

    # -- reflector callbacks --------------------------------------------------------------------

    async def _replace(self, items: list[Obj], rv: str) -> None:
        if self.transform is not None:
            items = [self.transform(o) for o in items]
        store = self.store
        key = store.key_func
        new_keys = set()
        changes: list[tuple[str, Obj | None, Obj]] = []
        for obj in items:
            k = key(obj)
            new_keys.add(k)
            old = store.get(k)
            if old is None:
                changes.append(("add", None, obj))
            elif resource_version(old) != resource_version(obj):
                changes.append(("update", old, obj))
        deleted = [store.get(k) for k in store.keys() if k not in new_keys]
        store.replace(items)
        first = not self.has_synced
        for kind, old, obj in changes:
            for reg in list(self._handlers):
                if kind == "add":
                    await _call(reg.on_add, obj)
                else:
                    await _call(reg.on_update, old, obj)
        for gone in deleted:
            for reg in list(self._handlers):
                await _call(reg.on_delete, gone)
        self._synced.set()  # after the handlers saw the initial objects (client-go's HasSynced)
        if first:
            log.debug("%s: synced %d objects at rv %s", self.resource, len(items), rv)

    async def _event(self, typ: str, obj: Obj) -> None:
        if self.transform is not None:
            obj = self.transform(obj)
        store = self.store
        if typ == "DELETED":
            old = store.delete(obj)
            for reg in list(self._handlers):
                await _call(reg.on_delete, obj if obj.get("metadata") else old)
            return
        old = store.add(obj)
        for reg in list(self._handlers):
            if old is None:
                await _call(reg.on_add, obj)
            else:
                await _call(reg.on_update, old, obj)

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    def start(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.reflector.run(), name=f"informer:{self.resource}"
            )
            for reg in self._handlers:
                self._start_resync(reg)
        return self._task

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *(r.task for r in self._handlers)] if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._task = None
        for r in self._handlers:
            r.task = None

    # -- lister ---------------------------------------------------------------------------------

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.store.get_by_name(name, namespace)

    def list(self, namespace: str | None = None) -> list[Obj]:
        return self.store.list(namespace)

    def by_index(self, index: str, value: str) -> list[Obj]:
        return self.store.by_index(index, value)


class SharedInformerFactory:
    """One shared informer per (resource, namespace, selectors) for the whole process."""

    def __init__(
        self,
        client: Client,
        *,
        resync_period: float = 0.0,
        namespace: str | None = None,
        page_size: int = 500,
    ):
        self.client = client
        self.resync_period = resync_period
        self.namespace = namespace
        self.page_size = page_size
        self._informers: dict[tuple[Any, ...], SharedInformer] = {}
        self._started = False

    def informer(
        self,
        resource: ResourceLike,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: dict[str, IndexFunc] | None = None,
    ) -> SharedInformer:
        res = _res(resource)
        ns = namespace if namespace is not None else self.namespace
        key = (res, ns, label_selector or "", field_selector or "")
        inf = self._informers.get(key)
        if inf is None:
            inf = SharedInformer(
                self.client,
                res,
                namespace=ns,
                label_selector=label_selector,
                field_selector=field_selector,
                indexers=indexers,
                resync_period=self.resync_period,
                page_size=self.page_size,
            )
            self._informers[key] = inf
            if self._started:
                inf.start()
        elif indexers:
            for name, fn in indexers.items():
                if name not in inf.store._indexers:
                    inf.add_indexers({name: fn})
        return inf

    @property
    def informers(self) -> list[SharedInformer]:
        return list(self._informers.values())

    def start(self) -> None:
        self._started = True
        for inf in self._informers.values():
            inf.start()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        return await wait_for_sync(*self._informers.values(), timeout=timeout)

    async def stop(self) -> None:
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))
        self._started = False


async def wait_for_sync(*informers: SharedInformer, timeout: float | None = None) -> bool:
    """True when every informer has completed its first list (False on timeout)."""
    try:
        async with asyncio.timeout(timeout):
            for inf in informers:
                await inf.wait_for_sync()
        return True
    except TimeoutError:
        return False
