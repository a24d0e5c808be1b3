"""In-memory mirrors of a few store prefixes (RBAC objects, pods by node) for per-request checks.

Authorization must not read the store on every request, so the API server keeps what the
authorizers need in memory: one list + watch per prefix, re-listing when a watch ends (overflow,
compaction). A check that depends on an object written just before (a RoleBinding created by the previous
request) is made consistent by :meth:`Mirror.resync`: authorizers retry a denial once after
re-listing (only when the store's revision moved since the last re-list). Per-key revisions keep
a late watch event from undoing a newer re-list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from hyperkube.api.serialization import decode
from hyperkube.storage.interface import Store

log = logging.getLogger("hyperkube.apiserver.mirror")

Obj = dict[str, Any]
# on_change(prefix, key, old, new): new None = deleted, old None = added
OnChange = Callable[[str, str, Obj | None, Obj | None], None]


class Mirror:
    def __init__(self, store: Store, prefixes: list[str], on_change: OnChange | None = None) -> None:
        self.store = store
        self.prefixes = prefixes
        self.objects: dict[str, dict[str, Obj]] = {p: {} for p in prefixes}
        self.on_change = on_change
        self.revision = 0
        self._revs: dict[str, int] = dict.fromkeys(prefixes, 0)
        self._tasks: list[asyncio.Task[None]] = []
        self._keyrev: dict[str, int] = {}
        self._synced = 0

    async def start(self) -> None:
        for p in self.prefixes:
            rev = await self._relist(p)
            self._tasks.append(asyncio.create_task(self._watch(p, rev)))
        self._update_revision()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    def _update_revision(self) -> None:
        self.revision = min(self._revs.values()) if self._revs else 0

    async def _relist(self, prefix: str) -> int:
        r = await self.store.list(prefix)
        old = self.objects[prefix]
        new = {kv.key: decode(kv.value, kv.mod_revision) for kv in r.items}
        for kv in r.items:
            self._keyrev[kv.key] = kv.mod_revision
        for k in old.keys() - new.keys():
            self._keyrev[k] = r.revision
        self.objects[prefix] = new
        if self.on_change is not None:
            for k in old.keys() - new.keys():
                self.on_change(prefix, k, old[k], None)
            for k, v in new.items():
                self.on_change(prefix, k, old.get(k), v)
        self._revs[prefix] = r.revision
        return r.revision

    async def _watch(self, prefix: str, rev: int) -> None:
        while True:
            try:
                async for ev in self.store.watch(prefix, rev):
                    if ev.revision <= self._keyrev.get(ev.key, 0):
                        continue  # older than a re-list that already applied it
                    self._keyrev[ev.key] = ev.revision
                    objs = self.objects[prefix]
                    old = objs.get(ev.key)
                    if ev.value is None:
                        objs.pop(ev.key, None)
                        new = None
                    else:
                        new = objs[ev.key] = decode(ev.value, ev.revision)
                    if self.on_change is not None:
                        self.on_change(prefix, ev.key, old, new)
                    rev = self._revs[prefix] = ev.revision
                    self._update_revision()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # overflow, compaction, store restart: re-list
                log.info("mirror of %s re-lists after %s", prefix, e)
                await asyncio.sleep(0.2)
                with contextlib.suppress(Exception):
                    rev = await self._relist(prefix)
                    self._update_revision()

    async def resync(self) -> None:
        """Re-list every prefix now unless nothing changed in the store since the last resync
        (used after a denial, so a binding written just before is seen)."""
        target = await self.store.current_revision()
        if target <= self._synced:
            return
        for p in self.prefixes:
            await self._relist(p)
        self._update_revision()
        self._synced = target
