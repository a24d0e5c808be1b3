"""Garbage collector: ownerReferences with background, foreground and orphan propagation.

Upstream's design (pkg/controller/garbagecollector), on shared informers:

- **Graph.** At start the collector discovers every resource the server serves that can be
  listed, watched, patched and deleted (events excepted, as upstream) and watches them all
  through the shared informer factory (pods, ReplicaSets ... are the same watches the other
  controllers use). Each object is a node ``uid → (resource, namespace, name, ownerReferences)``;
  ``dependents[owner uid]`` is the reverse edge set. Discovery is repeated every 30 s so new
  resource types (CRDs) are watched too.
- **Background** (the default): when an owner disappears, each dependent is queued for
  ``attempt_to_delete``. That *verifies* every owner with a live GET (a cache can be stale): an
  owner that is gone or has another uid is *dangling*. If every owner is dangling the dependent
  is deleted (uid precondition); if some owner is still there, only the dangling references are
  removed. Objects whose owners were never seen are checked the same way once the caches sync.
- **Foreground**: an owner with ``deletionTimestamp`` and the ``foregroundDeletion`` finalizer
  gets its dependents deleted first (a dependent that has dependents of its own is deleted in
  the foreground too, so the wait recurses); once no dependent with ``blockOwnerDeletion`` is
  left, the finalizer is removed and the server deletes the owner.
- **Orphan**: an owner with the ``orphan`` finalizer has its references removed from every
  dependent, then the finalizer removed.

Every write is a patch conditioned on the object's resourceVersion (409 → retried with backoff).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from hyperkube.client import ApiError, Conflict, NotFound, Resource, WorkQueue, run_worker
from hyperkube.controllers.base import Controller, ControllerContext, Obj, is_deleting, meta

log = logging.getLogger("hyperkube.controllers.garbagecollector")

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
IGNORED = {("", "events"), ("events.k8s.io", "events")}


@dataclass(slots=True)
class Node:
    uid: str
    res: Resource
    namespace: str
    name: str
    owners: list[Obj]
    deleting: bool = False
    finalizers: list[str] = field(default_factory=list)
    rv: str = ""


class GarbageCollector(Controller):
    name = "garbagecollector"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.nodes: dict[str, Node] = {}
        self.dependents: dict[str, set[str]] = {}
        self.by_kind: dict[tuple[str, str], Resource] = {}
        self.delete_queue = WorkQueue("garbage_collector_attempt_to_delete")
        self.orphan_queue = WorkQueue("garbage_collector_attempt_to_orphan")
        self.informers: list[Any] = []
        self.resources: list[Resource] = []
        self.synced = False  # until every cache is filled, unknown owners are not yet suspicious
        self.rediscovery_period = 30.0
        self.sync_timeout = 60.0

    # -- discovery ----------------------------------------------------------------------------------

    async def discover(self) -> list[Resource]:
        out: list[Resource] = []
        paths = ["/api/v1"]
        try:
            groups = await self.client.request("GET", "/apis")
            for g in groups.get("groups") or ():
                pv = (g.get("preferredVersion") or {}).get("groupVersion")
                if pv:
                    paths.append(f"/apis/{pv}")
        except ApiError as e:
            log.warning("discovery of /apis failed: %s", e)
        for path in paths:
            try:
                lst = await self.client.request("GET", path)
            except ApiError:
                continue
            gv = lst.get("groupVersion") or "v1"
            group, _, version = gv.rpartition("/")
            for r in lst.get("resources") or ():
                if "/" in r.get("name", ""):
                    continue
                verbs = set(r.get("verbs") or ())
                if not {"list", "watch", "delete", "patch"} <= verbs or (group, r["name"]) in IGNORED:
                    continue
                res = Resource(group, version, r["name"], bool(r.get("namespaced")), r.get("kind", ""))
                out.append(res)
                self.by_kind[(gv, res.kind)] = res
        return out

    # -- graph --------------------------------------------------------------------------------------

    def _observe(self, res: Resource, obj: Obj) -> None:
        md = meta(obj)
        uid = md.get("uid")
        if not uid:
            return
        old = self.nodes.get(uid)
        owners = list(md.get("ownerReferences") or ())
        node = Node(
            uid,
            res,
            md.get("namespace", ""),
            md.get("name", ""),
            owners,
            bool(md.get("deletionTimestamp")),
            list(md.get("finalizers") or ()),
            md.get("resourceVersion", ""),
        )
        self.nodes[uid] = node
        old_owner_uids = {r.get("uid") for r in (old.owners if old else ())}
        new_owner_uids = {r.get("uid") for r in owners}
        for ou in old_owner_uids - new_owner_uids:
            deps = self.dependents.get(ou)
            if deps:
                deps.discard(uid)
                self._maybe_owner_done(ou)
        for ou in new_owner_uids - old_owner_uids:
            self.dependents.setdefault(ou, set()).add(uid)
            if ou not in self.nodes and self.synced:
                self.delete_queue.add(uid)  # owner never seen: verify it
            elif self.nodes[ou].deleting and FOREGROUND in self.nodes[ou].finalizers:
                self.delete_queue.add(uid)
        if node.deleting:
            if FOREGROUND in node.finalizers:
                self.delete_queue.add(uid)  # delete dependents first
                for d in self.dependents.get(uid, ()):
                    self.delete_queue.add(d)
            if ORPHAN in node.finalizers:
                self.orphan_queue.add(uid)

    def _gone(self, res: Resource, obj: Obj) -> None:
        uid = meta(obj).get("uid")
        node = self.nodes.pop(uid, None) if uid else None
        if node is None:
            return
        for r in node.owners:
            deps = self.dependents.get(r.get("uid"))
            if deps is not None:
                deps.discard(uid)
                if not deps:
                    self.dependents.pop(r.get("uid"), None)
                self._maybe_owner_done(r.get("uid"))
        for d in self.dependents.get(uid, ()):
            self.delete_queue.add(d)

    def _maybe_owner_done(self, owner_uid: str | None) -> None:
        owner = self.nodes.get(owner_uid or "")
        if owner is not None and owner.deleting and FOREGROUND in owner.finalizers:
            self.delete_queue.add(owner.uid)

    # -- verification -----------------------------------------------------------------------------

    def _res_of_ref(self, ref: Obj) -> Resource | None:
        return self.by_kind.get((ref.get("apiVersion", ""), ref.get("kind", "")))

    async def _owner_state(self, node: Node, ref: Obj) -> str:
        """'solid', 'dangling' or 'waiting' (owner being deleted in the foreground)."""
        res = self._res_of_ref(ref)
        if res is None:
            return "solid"  # a kind we cannot look up: never delete on a guess
        try:
            owner = await self.client.get(
                res, ref.get("name", ""), node.namespace if res.namespaced else None
            )
        except NotFound:
            return "dangling"
        if meta(owner).get("uid") != ref.get("uid"):
            return "dangling"
        if is_deleting(owner) and FOREGROUND in (meta(owner).get("finalizers") or ()):
            return "waiting"
        return "solid"

    async def attempt_to_delete(self, uid: str) -> None:
        node = self.nodes.get(uid)
        if node is None:
            return
        if node.deleting and FOREGROUND in node.finalizers:
            await self._process_foreground(node)
            return
        if node.deleting or not node.owners:
            return
        states = {r.get("uid"): await self._owner_state(node, r) for r in node.owners}
        solid = [r for r in node.owners if states[r.get("uid")] == "solid"]
        dangling = [r for r in node.owners if states[r.get("uid")] == "dangling"]
        waiting = [r for r in node.owners if states[r.get("uid")] == "waiting"]
        if solid:
            if dangling or waiting:
                refs = []
                for r in node.owners:
                    if states[r.get("uid")] == "dangling":
                        continue
                    if states[r.get("uid")] == "waiting":
                        r = dict(r, blockOwnerDeletion=False)
                    refs.append(r)
                await self._patch(node, {"metadata": {"ownerReferences": refs}})
            return
        policy = "Background"
        if waiting and self.dependents.get(uid):
            policy = "Foreground"
        elif ORPHAN in node.finalizers:
            policy = "Orphan"
        log.info(
            "deleting %s %s/%s (owners gone: %s)",
            node.res,
            node.namespace,
            node.name,
            [r.get("name") for r in node.owners],
        )
        try:
            await self.client.delete(
                node.res,
                node.name,
                node.namespace or None,
                propagation_policy=policy,
                preconditions={"uid": uid},
            )
        except NotFound:
            pass
        except Conflict:
            pass  # the uid changed: a new object of that name; not ours to delete

    async def _process_foreground(self, node: Node) -> None:
        blocking = [
            self.nodes[d]
            for d in self.dependents.get(node.uid, ())
            if d in self.nodes
            and any(r.get("uid") == node.uid and r.get("blockOwnerDeletion") for r in self.nodes[d].owners)
        ]
        if blocking:
            for dep in blocking:
                if not dep.deleting:
                    policy = "Foreground" if self.dependents.get(dep.uid) else "Background"
                    try:
                        await self.client.delete(
                            dep.res,
                            dep.name,
                            dep.namespace or None,
                            propagation_policy=policy,
                            preconditions={"uid": dep.uid},
                        )
                    except (NotFound, Conflict):
                        pass
            return
        fins = [f for f in node.finalizers if f != FOREGROUND]
        await self._patch(node, {"metadata": {"finalizers": fins or None}})

    async def attempt_to_orphan(self, uid: str) -> None:
        node = self.nodes.get(uid)
        if node is None or ORPHAN not in node.finalizers:
            return
        for d in list(self.dependents.get(uid, ())):
            dep = self.nodes.get(d)
            if dep is None:
                continue
            refs = [r for r in dep.owners if r.get("uid") != uid]
            await self._patch(dep, {"metadata": {"ownerReferences": refs or None}})
        fins = [f for f in node.finalizers if f != ORPHAN]
        await self._patch(node, {"metadata": {"finalizers": fins or None}})

    async def _patch(self, node: Node, patch: Obj) -> None:
        patch["metadata"]["uid"] = node.uid
        patch["metadata"]["resourceVersion"] = node.rv
        try:
            await self.client.patch(node.res, node.name, patch, node.namespace or None)
        except NotFound:
            pass

    # -- run ----------------------------------------------------------------------------------------

    def _monitor(self, resources: list[Resource]) -> None:
        known = set(self.resources)
        for res in resources:
            if res in known:
                continue
            inf = self.ctx.factory.informer(res)
            inf.add_event_handler(
                lambda o, r=res: self._observe(r, o),
                lambda old, new, r=res: self._observe(r, new),
                lambda o, r=res: self._gone(r, o),
            )
            self.informers.append(inf)
            self.resources.append(res)
            inf.start()

    async def _rediscover(self) -> None:
        """New resource types (CRDs, late API groups) are watched too, as upstream's 30 s resync."""
        while True:
            await asyncio.sleep(self.rediscovery_period)
            try:
                self._monitor(await self.discover())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                log.info("garbage collector rediscovery failed: %s", e)

    async def run(self) -> None:
        self._monitor(await self.discover())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sync_timeout
        while not all(i.has_synced for i in self.informers):
            if loop.time() > deadline:
                missing = [str(i.resource) for i in self.informers if not i.has_synced]
                log.warning(
                    "garbage collector: caches of %s not synced; collecting with what is known", missing
                )
                break
            await asyncio.sleep(0.1)
        # once everything is known, verify the owners nobody has seen
        self.synced = True
        for uid, node in list(self.nodes.items()):
            if any(r.get("uid") not in self.nodes for r in node.owners):
                self.delete_queue.add(uid)
        tasks = [asyncio.create_task(run_worker(self.delete_queue, self.attempt_to_delete)) for _ in range(4)]
        tasks.append(asyncio.create_task(run_worker(self.orphan_queue, self.attempt_to_orphan)))
        tasks.append(asyncio.create_task(self._rediscover()))
        try:
            await asyncio.gather(*tasks)
        finally:
            self.delete_queue.shut_down()
            self.orphan_queue.shut_down()
            for t in tasks:
                t.cancel()

    def metrics(self) -> dict[str, float]:
        q = self.delete_queue
        return {
            "depth": q.depth + self.orphan_queue.depth,
            "adds": q.adds,
            "retries": q.retries,
            "graph_nodes": len(self.nodes),
        }
