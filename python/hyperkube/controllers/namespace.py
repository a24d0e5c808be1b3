"""Namespace controller: deleting a namespace deletes everything in it, then the namespace.

A namespace with ``deletionTimestamp`` (phase Terminating) is queued. ``reconcile`` discovers
every namespaced resource the server serves that supports ``deletecollection`` or ``delete``
(discovery is cached for 30 s), deletes the content of each (a collection delete, falling back
to per-object deletes), and requeues itself every second while anything is left (pods being
terminated gracefully by their kubelets, objects held by finalizers). When the namespace is
empty it removes the ``kubernetes`` finalizer through the ``finalize`` subresource, after which
the API server deletes the namespace. The status conditions upstream reports
(NamespaceContentRemaining, NamespaceDeletionContentFailure ...) are written as it goes.
"""

from __future__ import annotations

import logging
import time

from hyperkube.client import NAMESPACES, ApiError, NotFound, Resource
from hyperkube.client.errors import MethodNotAllowed
from hyperkube.client.timeutil import rfc3339
from hyperkube.controllers.base import ControllerContext, Obj, QueueController, is_deleting, name_of

log = logging.getLogger("hyperkube.controllers.namespace")


class NamespaceController(QueueController):
    name = "namespace"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.ns_informer = ctx.factory.informer(NAMESPACES)
        self.informers = (self.ns_informer,)
        self.ns_informer.add_event_handler(self._ns, lambda o, n: self._ns(n), None)
        self._discovered: tuple[float, list[tuple[Resource, set[str]]]] | None = None

    def _ns(self, ns: Obj) -> None:
        if is_deleting(ns):
            self.queue.add(name_of(ns))

    async def namespaced_resources(self) -> list[tuple[Resource, set[str]]]:
        now = time.monotonic()
        if self._discovered and now - self._discovered[0] < 30:
            return self._discovered[1]
        paths = ["/api/v1"]
        groups = await self.client.request("GET", "/apis")
        for g in groups.get("groups") or ():
            for v in g.get("versions") or ():
                if v.get("groupVersion") == (g.get("preferredVersion") or {}).get("groupVersion"):
                    paths.append(f"/apis/{v['groupVersion']}")
        out = []
        for path in paths:
            try:
                lst = await self.client.request("GET", path)
            except ApiError:
                continue
            group, _, version = (lst.get("groupVersion") or "v1").rpartition("/")
            for r in lst.get("resources") or ():
                verbs = set(r.get("verbs") or ())
                if "/" in r.get("name", "") or not r.get("namespaced") or "list" not in verbs:
                    continue
                if not verbs & {"delete", "deletecollection"}:
                    continue
                out.append((Resource(group, version, r["name"], True, r.get("kind", "")), verbs))
        self._discovered = (now, out)
        return out

    async def reconcile(self, key: str) -> float | None:
        ns = self.ns_informer.get(key)
        if ns is None or not is_deleting(ns):
            return None
        remaining = 0
        failures: list[str] = []
        for res, verbs in await self.namespaced_resources():
            try:
                lst = await self.client.list(res, key, limit=500)
            except NotFound:
                continue
            except ApiError as e:
                failures.append(f"{res}: {e.message}")
                continue
            items = lst.get("items") or []
            if not items:
                continue
            remaining += len(items)
            if "deletecollection" in verbs:
                try:
                    await self.client.delete_collection(res, key, propagation_policy="Background")
                    continue
                except (MethodNotAllowed, NotFound):
                    pass
                except ApiError as e:
                    failures.append(f"{res}: {e.message}")
                    continue
            for it in items:
                if is_deleting(it):
                    continue
                try:
                    await self.client.delete(res, name_of(it), key, propagation_policy="Background")
                except NotFound:
                    pass
                except ApiError as e:
                    failures.append(f"{res} {name_of(it)}: {e.message}")
        if remaining or failures:
            await self._conditions(ns, remaining, failures)
            return 1.0
        spec = dict(ns.get("spec") or {})
        fins = [f for f in spec.get("finalizers") or () if f != "kubernetes"]
        if fins != list(spec.get("finalizers") or ()):
            body = dict(ns, spec=dict(spec, finalizers=fins))
            try:
                await self.client.update(NAMESPACES, body, subresource="finalize")
            except NotFound:
                return None
        return None

    async def _conditions(self, ns: Obj, remaining: int, failures: list[str]) -> None:
        now = rfc3339()
        conds = [
            {
                "type": "NamespaceContentRemaining",
                "status": "True" if remaining else "False",
                "reason": "SomeResourcesRemain" if remaining else "ContentRemoved",
                "message": f"Some resources are remaining: {remaining} objects"
                if remaining
                else "All content successfully removed",
                "lastTransitionTime": now,
            },
            {
                "type": "NamespaceDeletionContentFailure",
                "status": "True" if failures else "False",
                "reason": "ContentDeletionFailed" if failures else "ContentDeleted",
                "message": "; ".join(failures)[:1000]
                if failures
                else "All content successfully deleted, may be waiting on finalization",
                "lastTransitionTime": now,
            },
        ]
        old = {c.get("type"): c for c in (ns.get("status") or {}).get("conditions") or ()}
        if all(
            old.get(c["type"], {}).get("status") == c["status"]
            and old.get(c["type"], {}).get("message") == c["message"]
            for c in conds
        ):
            return
        status = dict(ns.get("status") or {}, conditions=conds)
        try:
            await self.client.update(NAMESPACES, dict(ns, status=status), subresource="status")
        except ApiError:
            pass  # informational only


__all__ = ["NamespaceController"]
